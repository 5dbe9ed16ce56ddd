// Validate AsyncAPI documents with the official parser: `node validate.mjs doc.json ...`.
// Prints one JSON line per document: {"file", "valid", "errors": [...], "warnings": [...]};
// exits 1 if any document has an error.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"));
  const describe = (d) => `${d.code}: ${d.message} at ${JSON.stringify(d.path)}`;
  const errors = diagnostics.filter((d) => d.severity === 0).map(describe);
  const warnings = diagnostics.filter((d) => d.severity === 1).map(describe);
  const valid = document !== undefined && errors.length === 0;
  failed ||= !valid;
  console.log(JSON.stringify({ file, valid, errors, warnings }));
}
process.exit(failed ? 1 : 0);
