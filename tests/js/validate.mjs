// Validate AsyncAPI documents with the official parser: `node validate.mjs doc.json ...`.
// Prints one JSON line per document: whether it is valid, the parser's errors and
// warnings, and what the parsed document names (channels with their address,
// parameters and messages; operations; security schemes), so a test can check the
// parser's reading, not just our own. Exits 1 if any document has an error.
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
  const parsed = valid
    ? {
        channels: Object.fromEntries(
          document.channels().all().map((channel) => [
            channel.id(),
            {
              address: channel.address(),
              parameters: channel.parameters().all().map((parameter) => parameter.id()),
              messages: channel.messages().all().map((message) => message.id()),
            },
          ]),
        ),
        operations: Object.fromEntries(
          document.operations().all().map((operation) => [
            operation.id(),
            {
              action: operation.action(),
              messages: operation.messages().all().map((message) => message.id()),
              security: operation.security().flatMap((requirements) =>
                requirements.all().map((requirement) => requirement.scheme().json()),
              ),
            },
          ]),
        ),
        securitySchemes: document.components().securitySchemes().all().map((scheme) => scheme.id()),
      }
    : null;
  console.log(JSON.stringify({ file, valid, errors, warnings, parsed }));
}
process.exit(failed ? 1 : 0);
