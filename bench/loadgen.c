/*
 * loadgen.c - trioapi's WebSocket load generator.
 *
 * One thread, one epoll set, non-blocking sockets, 127.0.0.1 only.
 *
 * Modes (--mode):
 *   probe      one connection: handshake, one echo, close handshake; exit 0 if all went right.
 *   echo       --conns N connections ping-pong --size S byte text messages (one in flight per
 *              connection); --warmup W s, then --duration T s measured.  Reports msg/s and the
 *              p50/p99/max round trip.  An echo missing for --stall-timeout s is an error.
 *   idle       open --conns N connections, print "READY <n>" on stdout, hold them until a line
 *              arrives on stdin or --hold s pass, then close them.  Answers pings meanwhile.
 *   connrate   --concurrency K slots, each loops connect -> handshake -> close handshake -> EOF.
 *              Reports completed connections per second and the p50/p99 of connect -> EOF.
 *   broadcast  --conns N connections on --path (default /broadcast); connection 0 publishes a
 *              message, every other connection must receive it, then the next round starts.
 *              Reports deliveries/s and the p50/p99 delivery latency (publish -> receipt).
 *
 * Method:
 *   - Client frames are built once per connection, already masked (fixed mask key); per message
 *     only the 16-byte "<conn id><sequence>" prefix is re-masked.  No per-message allocation.
 *   - Every received byte is checked: text opcode, length, the id/sequence prefix and the
 *     filler.  With --json 1 the payload is a JSON object, {"id":"<conn><seq>","text":"<filler>"},
 *     for servers that parse and re-serialize what they echo (typed messages).  A mismatch, an unexpected close, a reset or a timeout counts as an error and the
 *     exit status is 1.
 *   - The handshake sends the RFC 6455 sample key and checks the Sec-WebSocket-Accept value it
 *     implies, so no SHA-1 is needed here.
 *   - CPU: the JSON line carries this process's own CPU share over the measured window
 *     (getrusage), the share of --server-pids (from /proc/PID/stat), and the busy share of
 *     every CPU (from /proc/stat), so anyone can see whether the load generator or the server
 *     was the limit.
 *   - Every loop is bounded: open phase by --open-timeout, measurement by --duration, idle by
 *     --hold, closing by 2 s, and the whole run by a hard deadline.
 *
 * Output: exactly one JSON line on stdout (plus "READY n" first in idle mode).
 *
 * Build: gcc -O2 -Wall -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- options */

enum mode { MODE_PROBE, MODE_ECHO, MODE_IDLE, MODE_CONNRATE, MODE_BROADCAST };
static const char *MODE_NAMES[] = {"probe", "echo", "idle", "connrate", "broadcast"};

static enum mode opt_mode = MODE_ECHO;
static int opt_port = 8000;
static const char *opt_path = NULL;
static int opt_conns = 1;
static size_t opt_size = 64;
static double opt_warmup = 1.0;
static double opt_duration = 3.0;
static double opt_open_timeout = 30.0;
static int opt_open_concurrency = 64;
static double opt_hold = 60.0;
static int opt_concurrency = 16;
static double opt_round_timeout = 5.0;
static double opt_stall_timeout = 2.0;
static char opt_server_pids[1024] = "";
static int opt_json = 0;

#define MAX_CONNS 20000
#define ID_LEN 16 /* "%08x%08x": connection id, sequence number */

/* ---------------------------------------------------------------- time */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t sec_to_ns(double s) { return (uint64_t)(s * 1e9); }

/* ---------------------------------------------------------------- errors */

static uint64_t n_errors;
static char first_error[256];

static void record_error(const char *fmt, ...) {
    n_errors++;
    if (first_error[0] == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(first_error, sizeof first_error, fmt, ap);
        va_end(ap);
        for (char *p = first_error; *p; p++)
            if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) *p = '\'';
    }
}

/* ---------------------------------------------------------------- latency histogram */
/*
 * Values in nanoseconds.  Below 2^10 ns one bucket per ns would be wasteful, so every power of
 * two [2^k, 2^(k+1)) is split into 128 equal buckets (< 0.8% relative error); values below 128 ns
 * are exact.  Constant memory, no sampling bias.
 */
#define H_SUB_BITS 7
#define H_SUB (1 << H_SUB_BITS)
#define H_OCTAVES 40
typedef struct {
    uint64_t count[H_OCTAVES * H_SUB];
    uint64_t n, max;
} histogram;

static int h_index(uint64_t v) {
    if (v < H_SUB) return (int)v;
    int msb = 63 - __builtin_clzll(v);           /* >= H_SUB_BITS */
    int octave = msb - H_SUB_BITS + 1;           /* >= 1 */
    int sub = (int)((v >> (msb - H_SUB_BITS)) & (H_SUB - 1));
    int idx = octave * H_SUB + sub;
    if (idx >= H_OCTAVES * H_SUB) idx = H_OCTAVES * H_SUB - 1;
    return idx;
}

static double h_value(int idx) { /* midpoint of the bucket */
    if (idx < H_SUB) return idx;
    int octave = idx / H_SUB, sub = idx % H_SUB;
    int msb = octave + H_SUB_BITS - 1;
    double width = (double)(1ULL << (msb - H_SUB_BITS));
    double lo = (double)(1ULL << msb) + sub * width;
    return lo + width / 2;
}

static void h_add(histogram *h, uint64_t v) {
    h->count[h_index(v)]++;
    h->n++;
    if (v > h->max) h->max = v;
}

static double h_quantile(const histogram *h, double q) {
    if (h->n == 0) return 0;
    uint64_t rank = (uint64_t)(q * (double)h->n);
    if (rank >= h->n) rank = h->n - 1;
    uint64_t seen = 0;
    for (int i = 0; i < H_OCTAVES * H_SUB; i++) {
        seen += h->count[i];
        if (seen > rank) {
            double v = h_value(i);
            return v > (double)h->max ? (double)h->max : v;
        }
    }
    return (double)h->max;
}

static histogram latency;

/* ---------------------------------------------------------------- CPU accounting */

static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static double pids_cpu_s(void) { /* summed utime+stime of --server-pids */
    double total = 0;
    long hz = sysconf(_SC_CLK_TCK);
    char list[sizeof opt_server_pids];
    snprintf(list, sizeof list, "%s", opt_server_pids);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char path[64], line[2048];
        snprintf(path, sizeof path, "/proc/%d/stat", atoi(tok));
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t got = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        line[got] = 0;
        char *p = strrchr(line, ')'); /* the command name may contain spaces */
        if (!p) continue;
        unsigned long utime = 0, stime = 0;
        /* after ")": state(3) ... utime is field 14, stime 15 */
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) == 2)
            total += (double)(utime + stime) / (double)hz;
    }
    return total;
}

#define MAX_CPUS 64
typedef struct {
    int n;
    unsigned long long busy[MAX_CPUS], total[MAX_CPUS];
} cpu_times;

static void read_cpu_times(cpu_times *c) {
    c->n = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f) && c->n < MAX_CPUS) {
        int id;
        unsigned long long v[10] = {0};
        if (strncmp(line, "cpu", 3) != 0 || !isdigit((unsigned char)line[3])) continue;
        if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &id, &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) < 5)
            continue;
        unsigned long long idle = v[3] + v[4];
        unsigned long long total = 0;
        for (int i = 0; i < 8; i++) total += v[i];
        c->busy[c->n] = total - idle;
        c->total[c->n] = total;
        c->n++;
    }
    fclose(f);
}

static double w_self_cpu0, w_server_cpu0;
static cpu_times w_cpu0;
static uint64_t w_start_ns, w_end_ns;
static double w_self_cpu, w_server_cpu; /* over the window, seconds */
static cpu_times w_cpu1;

static void window_begin(uint64_t t) {
    w_start_ns = t;
    w_self_cpu0 = self_cpu_s();
    w_server_cpu0 = pids_cpu_s();
    read_cpu_times(&w_cpu0);
}

static void window_end(uint64_t t) {
    w_end_ns = t;
    w_self_cpu = self_cpu_s() - w_self_cpu0;
    w_server_cpu = pids_cpu_s() - w_server_cpu0;
    read_cpu_times(&w_cpu1);
}

/* ---------------------------------------------------------------- handshake constants */

/* RFC 6455 section 1.3 sample key and the accept value the server must derive from it. */
static const char WS_KEY[] = "dGhlIHNhbXBsZSBub25jZQ==";
static const char WS_ACCEPT[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
static char handshake_req[512];
static size_t handshake_len;

static const uint8_t MASK_KEY[4] = {0x5a, 0xc3, 0x17, 0x9e};

/* The payload: ID_LEN bytes of "<conn><seq>" hex, then a fixed filler pattern; with --json the
   prefix sits at JSON_HEAD's end, inside {"id":"<prefix>","text":"<filler>"}. */
static uint8_t *filler; /* opt_size bytes, the unmasked payload with the prefix left as-is */
static size_t prefix_at = 0;
#define JSON_HEAD "{\"id\":\""
#define JSON_MIDDLE "\",\"text\":\""
#define JSON_TAIL "\"}"

/* Masked close frame, code 1000, built once. */
static uint8_t close_frame[8];

/* ---------------------------------------------------------------- connections */

enum state {
    ST_UNUSED,
    ST_CONNECTING, /* TCP connect in progress */
    ST_HANDSHAKE,  /* request (partly) sent, waiting for 101 */
    ST_OPEN,
    ST_CLOSING,    /* our close frame sent, waiting for the server's close and EOF */
    ST_DONE,
};

typedef struct {
    int fd;
    enum state st;
    uint32_t id;
    int retries;
    /* outgoing: one message frame owned by the connection, plus small control output */
    uint8_t *frame;
    size_t frame_len, frame_hdr;
    const uint8_t *out; /* bytes waiting to go out */
    size_t out_len, out_off;
    uint8_t ctl[140]; /* pong / close replies */
    int want_write;
    /* incoming */
    uint8_t *in;
    size_t in_len, in_cap;
    /* message bookkeeping */
    uint32_t seq_sent, seq_recv; /* echo: last sent / last received; broadcast: last received */
    uint64_t sent_at;
    int got_close;
    uint64_t t_connect; /* connrate: when this connection attempt started */
    int hs_sent;
} conn;

static conn *conns;
static int n_conns;
static int epfd;
static struct sockaddr_in server_addr;

static int n_open, n_opened_total, n_failed;

static void ep_update(conn *c) {
    struct epoll_event ev = {.events = EPOLLIN | (c->want_write ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close_fd(conn *c) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (c->st == ST_OPEN || c->st == ST_CLOSING) n_open--;
    c->st = ST_DONE;
    c->in_len = 0;
    c->out_len = c->out_off = 0;
    c->want_write = 0;
}

static void build_frame(conn *c) {
    size_t m = opt_size, h;
    uint8_t *f = malloc(14 + m);
    if (!f) {
        perror("malloc");
        exit(3);
    }
    f[0] = 0x81; /* FIN, text */
    if (m < 126) {
        f[1] = 0x80 | (uint8_t)m;
        h = 2;
    } else if (m < 65536) {
        f[1] = 0x80 | 126;
        f[2] = (uint8_t)(m >> 8);
        f[3] = (uint8_t)m;
        h = 4;
    } else {
        f[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++) f[2 + i] = (uint8_t)((uint64_t)m >> (56 - 8 * i));
        h = 10;
    }
    memcpy(f + h, MASK_KEY, 4);
    h += 4;
    for (size_t i = 0; i < m; i++) f[h + i] = filler[i] ^ MASK_KEY[i & 3];
    c->frame = f;
    c->frame_hdr = h;
    c->frame_len = h + m;
}

static void write_prefix(char out[ID_LEN + 1], uint32_t id, uint32_t seq) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) out[i] = hex[(id >> (28 - 4 * i)) & 15];
    for (int i = 0; i < 8; i++) out[8 + i] = hex[(seq >> (28 - 4 * i)) & 15];
    out[ID_LEN] = 0;
}

static int flush_out(conn *c);

static void queue_out(conn *c, const uint8_t *p, size_t n) {
    /* only one thing is ever queued at a time per connection, by construction of the modes */
    if (c->out_off < c->out_len) {
        record_error("conn %u: output queued while output pending", c->id);
        return;
    }
    c->out = p;
    c->out_len = n;
    c->out_off = 0;
    flush_out(c);
}

static void send_message(conn *c, uint32_t seq) {
    char prefix[ID_LEN + 1];
    write_prefix(prefix, c->id, seq);
    uint8_t *payload = c->frame + c->frame_hdr;
    for (size_t i = prefix_at; i < prefix_at + ID_LEN; i++)
        payload[i] = (uint8_t)prefix[i - prefix_at] ^ MASK_KEY[i & 3];
    c->seq_sent = seq;
    c->sent_at = now_ns();
    queue_out(c, c->frame, c->frame_len);
}

static void send_close(conn *c) {
    if (c->st != ST_OPEN) return;
    c->st = ST_CLOSING;
    if (c->out_off < c->out_len) { /* a message is still going out; just drop the connection */
        conn_close_fd(c);
        return;
    }
    queue_out(c, close_frame, sizeof close_frame);
}

/* returns -1 if the connection was closed */
static int flush_out(conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_write) {
                c->want_write = 1;
                ep_update(c);
            }
            return 0;
        }
        if (c->st != ST_CLOSING) record_error("conn %u: send: %s", c->id, strerror(errno));
        conn_close_fd(c);
        return -1;
    }
    c->out_len = c->out_off = 0;
    if (c->want_write) {
        c->want_write = 0;
        ep_update(c);
    }
    return 0;
}

static int start_connect(conn *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        record_error("socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->st = ST_CONNECTING;
    c->in_len = 0;
    c->out_len = c->out_off = 0;
    c->got_close = 0;
    c->hs_sent = 0;
    c->seq_sent = c->seq_recv = 0;
    c->t_connect = now_ns();
    int r = connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr);
    c->want_write = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    if (r < 0 && errno != EINPROGRESS) {
        record_error("connect: %s", strerror(errno));
        conn_close_fd(c);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- mode state */

static int measuring;           /* inside the measured window */
static uint64_t messages;       /* echo: round trips completed in the window; broadcast: deliveries */
static uint64_t connections_ok; /* connrate: completed in the window */
static uint64_t connections_all; /* connrate: completed, warm-up included */
static uint64_t frames_in;       /* data frames received in any phase (bench/instructions.py's units) */
static int stop_sending;        /* echo: no new messages (closing phase) */

/* broadcast */
static uint32_t b_seq;          /* current round's sequence number */
static uint64_t b_sent_at;
static int b_pending;           /* receivers that have not got the current round */
static int b_syncing;           /* start-up: resend until everyone is subscribed */
static uint64_t b_rounds;
static uint64_t b_self_copies;
static int b_running;

static void on_open(conn *c);
static void on_message(conn *c, const uint8_t *p, size_t n, int opcode);

static void broadcast_publish(void) {
    conn *pub = &conns[0];
    if (pub->st != ST_OPEN || pub->out_off < pub->out_len) return;
    b_seq++;
    b_pending = n_conns - 1;
    for (int i = 1; i < n_conns; i++) conns[i].sent_at = 0; /* reused as "got this round" flag */
    send_message(pub, b_seq);
    b_sent_at = pub->sent_at;
}

/* ---------------------------------------------------------------- frame parsing */

/* Parse the handshake response. returns 1 when done, 0 when more bytes are needed, -1 on error */
static int parse_handshake(conn *c) {
    if (c->in_len < 4) return 0;
    uint8_t *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) {
        if (c->in_len > 8192) {
            record_error("conn %u: handshake response too long", c->id);
            return -1;
        }
        return 0;
    }
    size_t hlen = (size_t)(end - c->in) + 4;
    if (c->in_len < 12 || memcmp(c->in, "HTTP/1.1 101", 12) != 0) {
        char first[48];
        size_t k = 0;
        while (k < sizeof first - 1 && k < hlen && c->in[k] != '\r') {
            first[k] = (char)c->in[k];
            k++;
        }
        first[k] = 0;
        record_error("conn %u: handshake refused: %s", c->id, first);
        return -1;
    }
    int accept_ok = 0;
    const char *p = (const char *)c->in;
    const char *stop = (const char *)c->in + hlen;
    while (p < stop) {
        const char *eol = memmem(p, (size_t)(stop - p), "\r\n", 2);
        if (!eol) break;
        static const char name[] = "sec-websocket-accept:";
        if ((size_t)(eol - p) > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
            const char *v = p + sizeof name - 1;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            accept_ok = (size_t)(ve - v) == sizeof WS_ACCEPT - 1 && memcmp(v, WS_ACCEPT, sizeof WS_ACCEPT - 1) == 0;
        }
        p = eol + 2;
    }
    if (!accept_ok) {
        record_error("conn %u: bad or missing Sec-WebSocket-Accept", c->id);
        return -1;
    }
    memmove(c->in, c->in + hlen, c->in_len - hlen);
    c->in_len -= hlen;
    return 1;
}

/* Build a masked control frame (pong/close echo) into c->ctl. */
static size_t build_control(conn *c, int opcode, const uint8_t *payload, size_t n) {
    if (n > 125) n = 125;
    c->ctl[0] = (uint8_t)(0x80 | opcode);
    c->ctl[1] = (uint8_t)(0x80 | n);
    memcpy(c->ctl + 2, MASK_KEY, 4);
    for (size_t i = 0; i < n; i++) c->ctl[6 + i] = payload[i] ^ MASK_KEY[i & 3];
    return 6 + n;
}

/* Parse as many complete frames as the buffer holds. Returns -1 if the connection was closed. */
static int parse_frames(conn *c) {
    size_t off = 0;
    while (c->fd >= 0) {
        size_t avail = c->in_len - off;
        if (avail < 2) break;
        uint8_t *f = c->in + off;
        int fin = f[0] & 0x80, opcode = f[0] & 0x0f;
        if (f[0] & 0x70) {
            record_error("conn %u: reserved bits set (unexpected extension)", c->id);
            conn_close_fd(c);
            return -1;
        }
        if (f[1] & 0x80) {
            record_error("conn %u: server frame is masked", c->id);
            conn_close_fd(c);
            return -1;
        }
        uint64_t len = f[1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (avail < 4) break;
            len = ((uint64_t)f[2] << 8) | f[3];
            h = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | f[2 + i];
            h = 10;
        }
        if (len > (64u << 20)) {
            record_error("conn %u: frame of %llu bytes", c->id, (unsigned long long)len);
            conn_close_fd(c);
            return -1;
        }
        if (avail < h + len) {
            /* make room for the whole frame */
            size_t need = off + h + (size_t)len;
            if (need > c->in_cap) {
                size_t cap = c->in_cap;
                while (cap < need) cap *= 2;
                uint8_t *nb = realloc(c->in, cap);
                if (!nb) {
                    perror("realloc");
                    exit(3);
                }
                c->in = nb;
                c->in_cap = cap;
            }
            break;
        }
        const uint8_t *payload = f + h;
        off += h + (size_t)len;
        if (opcode == 0x9) { /* ping -> pong (only when nothing else is going out) */
            if (c->out_off >= c->out_len) queue_out(c, c->ctl, build_control(c, 0xA, payload, (size_t)len));
            continue;
        }
        if (opcode == 0xA) continue; /* unsolicited pong */
        if (opcode == 0x8) {
            c->got_close = 1;
            if (c->st == ST_OPEN) {
                if (!(opt_mode == MODE_ECHO && stop_sending))
                    record_error("conn %u: server closed the connection unexpectedly (%.*s)", c->id,
                                 len > 2 ? (int)(len - 2 > 60 ? 60 : len - 2) : 0, (const char *)payload + 2);
                /* reply with the same code, then wait for EOF */
                c->st = ST_CLOSING;
                if (c->out_off >= c->out_len)
                    queue_out(c, c->ctl, build_control(c, 0x8, payload, len >= 2 ? 2 : 0));
            }
            continue;
        }
        if (!fin || opcode == 0x0) {
            record_error("conn %u: fragmented message (opcode %d fin %d)", c->id, opcode, fin != 0);
            conn_close_fd(c);
            return -1;
        }
        if (opcode != 0x1) {
            record_error("conn %u: expected a text frame, got opcode %d", c->id, opcode);
            conn_close_fd(c);
            return -1;
        }
        on_message(c, payload, (size_t)len, opcode);
    }
    if (c->fd >= 0 && off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return c->fd >= 0 ? 0 : -1;
}

/* Validate a received payload against what conn `src_id` sent as message `seq`. */
static int payload_ok(const uint8_t *p, size_t n, uint32_t *src_id, uint32_t *seq) {
    if (n != opt_size || memcmp(p, filler, prefix_at) != 0) return 0;
    uint32_t a = 0, b = 0;
    for (int i = 0; i < 16; i++) {
        int ch = p[prefix_at + i], v;
        if (ch >= '0' && ch <= '9')
            v = ch - '0';
        else if (ch >= 'a' && ch <= 'f')
            v = ch - 'a' + 10;
        else
            return 0;
        if (i < 8)
            a = (a << 4) | (uint32_t)v;
        else
            b = (b << 4) | (uint32_t)v;
    }
    size_t rest = prefix_at + ID_LEN;
    if (memcmp(p + rest, filler + rest, n - rest) != 0) return 0;
    *src_id = a;
    *seq = b;
    return 1;
}

static void on_message(conn *c, const uint8_t *p, size_t n, int opcode) {
    (void)opcode;
    uint32_t src, seq;
    uint64_t t = now_ns();
    frames_in++;
    if (!payload_ok(p, n, &src, &seq)) {
        record_error("conn %u: payload mismatch (%zu bytes, want %zu)", c->id, n, opt_size);
        conn_close_fd(c);
        return;
    }
    if (opt_mode == MODE_ECHO || opt_mode == MODE_PROBE) {
        if (src != c->id || seq != c->seq_sent || c->seq_recv == c->seq_sent) {
            record_error("conn %u: echo of %u/%u, expected %u/%u", c->id, src, seq, c->id, c->seq_sent);
            conn_close_fd(c);
            return;
        }
        c->seq_recv = seq;
        if (measuring) {
            messages++;
            h_add(&latency, t - c->sent_at);
        }
        if (opt_mode == MODE_PROBE || stop_sending)
            send_close(c);
        else
            send_message(c, seq + 1);
        return;
    }
    if (opt_mode == MODE_BROADCAST) {
        if (src != 0) {
            record_error("conn %u: broadcast from unexpected source %u", c->id, src);
            conn_close_fd(c);
            return;
        }
        if (c->id == 0) { /* the publisher's own copy: allowed, checked, not counted */
            if (seq > b_seq) record_error("conn 0: own copy of a future message %u", seq);
            b_self_copies++;
            return;
        }
        if (b_syncing) { /* subscription start-up: any recent round counts */
            if (seq <= c->seq_recv || seq > b_seq) {
                record_error("conn %u: broadcast %u out of order during sync (last %u, now %u)", c->id, seq,
                             c->seq_recv, b_seq);
                conn_close_fd(c);
                return;
            }
        } else if (seq != c->seq_recv + 1 || seq != b_seq) {
            record_error("conn %u: broadcast %u, expected %u", c->id, seq, c->seq_recv + 1);
            conn_close_fd(c);
            return;
        }
        c->seq_recv = seq;
        if (seq == b_seq && !c->sent_at) {
            c->sent_at = 1;
            b_pending--;
            if (measuring && !b_syncing) {
                messages++;
                h_add(&latency, t - b_sent_at);
                if (b_pending == 0) b_rounds++;
            }
        }
        return;
    }
    record_error("conn %u: unexpected message in %s mode", c->id, MODE_NAMES[opt_mode]);
}

static void on_open(conn *c) {
    n_open++;
    n_opened_total++;
    if (opt_mode == MODE_PROBE) {
        send_message(c, 1);
    } else if (opt_mode == MODE_CONNRATE) {
        send_close(c);
    } else if (opt_mode == MODE_ECHO && b_running) {
        send_message(c, 1);
    }
}

/* Handle an epoll event on c. */
static void on_event(conn *c, uint32_t events) {
    if (c->fd < 0) return;
    if (c->st == ST_CONNECTING) {
        if (events & (EPOLLERR | EPOLLHUP)) {
            int err = 0;
            socklen_t l = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            conn_close_fd(c);
            c->st = ST_UNUSED; /* the opener may retry it */
            c->retries++;
            if (c->retries > 3 || opt_mode == MODE_CONNRATE) {
                record_error("conn %u: connect: %s", c->id, strerror(err ? err : ECONNREFUSED));
                c->st = ST_DONE;
                n_failed++;
            }
            return;
        }
        if (!(events & EPOLLOUT)) return;
        c->st = ST_HANDSHAKE;
        queue_out(c, (const uint8_t *)handshake_req, handshake_len);
        if (c->fd < 0) return;
        events &= ~(uint32_t)EPOLLOUT;
    }
    if ((events & EPOLLOUT) && c->out_off < c->out_len) {
        if (flush_out(c) < 0) return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        if (c->in_cap - c->in_len < 4096) {
            size_t cap = c->in_cap * 2;
            uint8_t *nb = realloc(c->in, cap);
            if (!nb) {
                perror("realloc");
                exit(3);
            }
            c->in = nb;
            c->in_cap = cap;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (!(c->st == ST_CLOSING && c->got_close))
                record_error("conn %u: recv: %s (state %d)", c->id, strerror(errno), c->st);
            if (c->st == ST_HANDSHAKE) n_failed++;
            conn_close_fd(c);
            return;
        }
        if (n == 0) { /* EOF */
            if (c->st == ST_CLOSING && c->got_close) {
                if (opt_mode == MODE_CONNRATE) {
                    connections_all++;
                    if (measuring) {
                        connections_ok++;
                        h_add(&latency, now_ns() - c->t_connect); /* connect -> server's FIN */
                    }
                }
            } else if (!(c->st == ST_CLOSING && opt_mode != MODE_CONNRATE)) {
                record_error("conn %u: EOF in state %d", c->id, c->st);
                if (c->st == ST_HANDSHAKE) n_failed++;
            }
            conn_close_fd(c);
            return;
        }
        c->in_len += (size_t)n;
        if (c->st == ST_HANDSHAKE) {
            int r = parse_handshake(c);
            if (r < 0) {
                n_failed++;
                conn_close_fd(c);
                return;
            }
            if (r == 0) return;
            c->st = ST_OPEN;
            on_open(c);
            if (c->fd < 0) return;
        }
        if (c->st == ST_OPEN || c->st == ST_CLOSING) parse_frames(c);
    }
}

static void poll_once(int timeout_ms) {
    struct epoll_event evs[512];
    int n = epoll_wait(epfd, evs, 512, timeout_ms);
    for (int i = 0; i < n; i++) on_event((conn *)evs[i].data.ptr, evs[i].events);
}

/* Open every connection (at most opt_open_concurrency handshakes in flight). */
static int open_all(uint64_t deadline) {
    int next = 0;
    for (;;) {
        int in_flight = 0, settled = 0;
        for (int i = 0; i < n_conns; i++) {
            if (conns[i].st == ST_CONNECTING || conns[i].st == ST_HANDSHAKE) in_flight++;
            if (conns[i].st == ST_OPEN || conns[i].st == ST_CLOSING || conns[i].st == ST_DONE) settled++;
        }
        if (settled == n_conns) break;
        if (now_ns() > deadline) {
            record_error("opening: %d of %d connections open after --open-timeout", n_open, n_conns);
            break;
        }
        /* (re)start unused slots, lowest first */
        for (next = 0; next < n_conns && in_flight < opt_open_concurrency; next++) {
            if (conns[next].st == ST_UNUSED) {
                if (start_connect(&conns[next]) == 0) in_flight++;
                else {
                    conns[next].st = ST_DONE;
                    n_failed++;
                }
            }
        }
        poll_once(10);
    }
    return n_open;
}

/* Close every open connection with a close handshake, bounded by `secs`. */
static void close_all(double secs) {
    stop_sending = 1;
    uint64_t deadline = now_ns() + sec_to_ns(secs);
    for (int i = 0; i < n_conns; i++) {
        conn *c = &conns[i];
        if (c->st == ST_OPEN && c->out_off >= c->out_len) send_close(c);
    }
    while (now_ns() < deadline) {
        int live = 0;
        for (int i = 0; i < n_conns; i++) {
            conn *c = &conns[i];
            if (c->fd < 0) continue;
            live++;
            /* echo connections still waiting for an echo close after it arrives (on_message) */
            if (c->st == ST_OPEN && c->out_off >= c->out_len && c->seq_recv == c->seq_sent) send_close(c);
        }
        if (!live) break;
        poll_once(10);
    }
    for (int i = 0; i < n_conns; i++) conn_close_fd(&conns[i]);
}

/* ---------------------------------------------------------------- JSON output */

static void print_result(double window_s) {
    printf("{\"mode\":\"%s\",\"port\":%d,\"path\":\"%s\",\"conns\":%d,\"size\":%zu", MODE_NAMES[opt_mode], opt_port,
           opt_path, n_conns, opt_size);
    printf(",\"opened\":%d,\"failed\":%d", n_opened_total, n_failed);
    printf(",\"window_s\":%.4f,\"frames_in\":%llu", window_s, (unsigned long long)frames_in);
    if (opt_mode == MODE_ECHO || opt_mode == MODE_PROBE) {
        printf(",\"messages\":%llu,\"msg_per_s\":%.1f", (unsigned long long)messages,
               window_s > 0 ? (double)messages / window_s : 0.0);
    }
    if (opt_mode == MODE_BROADCAST) {
        printf(",\"rounds\":%llu,\"deliveries\":%llu,\"deliveries_per_s\":%.1f,\"rounds_per_s\":%.1f",
               (unsigned long long)b_rounds, (unsigned long long)messages,
               window_s > 0 ? (double)messages / window_s : 0.0, window_s > 0 ? (double)b_rounds / window_s : 0.0);
        printf(",\"self_copies\":%llu", (unsigned long long)b_self_copies);
    }
    if (opt_mode == MODE_CONNRATE) {
        printf(",\"concurrency\":%d,\"connections\":%llu,\"conn_per_s\":%.1f", opt_concurrency,
               (unsigned long long)connections_ok, window_s > 0 ? (double)connections_ok / window_s : 0.0);
        printf(",\"connections_all\":%llu", (unsigned long long)connections_all);
    }
    if (latency.n) {
        printf(",\"samples\":%llu,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f",
               (unsigned long long)latency.n, h_quantile(&latency, 0.50) / 1e3, h_quantile(&latency, 0.90) / 1e3,
               h_quantile(&latency, 0.99) / 1e3, h_quantile(&latency, 0.999) / 1e3, (double)latency.max / 1e3);
    }
    if (window_s > 0) {
        printf(",\"loadgen_cpu_pct\":%.1f", 100.0 * w_self_cpu / window_s);
        if (opt_server_pids[0]) printf(",\"server_cpu_pct\":%.1f", 100.0 * w_server_cpu / window_s);
        printf(",\"cpu_busy_pct\":[");
        for (int i = 0; i < w_cpu1.n && i < w_cpu0.n; i++) {
            unsigned long long tot = w_cpu1.total[i] - w_cpu0.total[i];
            unsigned long long busy = w_cpu1.busy[i] - w_cpu0.busy[i];
            printf("%s%.1f", i ? "," : "", tot ? 100.0 * (double)busy / (double)tot : 0.0);
        }
        printf("]");
    }
    printf(",\"errors\":%llu", (unsigned long long)n_errors);
    if (first_error[0]) printf(",\"first_error\":\"%s\"", first_error);
    printf("}\n");
    fflush(stdout);
}

/* ---------------------------------------------------------------- modes */

/* An echo that does not come back within --stall-timeout is an error (a server that drops
 * messages would otherwise just look slow). Checked at most every 100 ms. */
static void check_stalls(int force) {
    static uint64_t last;
    uint64_t t = now_ns();
    if (!force && t - last < 100000000ULL) return;
    last = t;
    for (int i = 0; i < n_conns; i++) {
        conn *c = &conns[i];
        if (c->st == ST_OPEN && c->seq_recv != c->seq_sent && t > c->sent_at &&
            t - c->sent_at > sec_to_ns(opt_stall_timeout)) {
            record_error("conn %u: no echo of message %u within %.1f s", c->id, c->seq_sent, opt_stall_timeout);
            c->seq_recv = c->seq_sent; /* report it once */
            conn_close_fd(c);
        }
    }
}

static double run_echo(void) {
    uint64_t deadline = now_ns() + sec_to_ns(opt_open_timeout);
    open_all(deadline);
    if (n_open == 0) return 0;
    b_running = 1; /* connections opened from now on start sending at once (none expected) */
    for (int i = 0; i < n_conns; i++)
        if (conns[i].st == ST_OPEN) send_message(&conns[i], 1);
    uint64_t t0 = now_ns();
    uint64_t w0 = t0 + sec_to_ns(opt_warmup), w1 = w0 + sec_to_ns(opt_duration);
    while (now_ns() < w0 && n_open > 0) {
        poll_once(5);
        check_stalls(0);
    }
    window_begin(now_ns());
    measuring = 1;
    while (now_ns() < w1 && n_open > 0) {
        poll_once(5);
        check_stalls(0);
    }
    measuring = 0;
    window_end(now_ns());
    check_stalls(1);
    close_all(2.0);
    return (double)(w_end_ns - w_start_ns) / 1e9;
}

static double run_probe(void) {
    uint64_t deadline = now_ns() + sec_to_ns(opt_open_timeout);
    measuring = 1;
    window_begin(now_ns());
    open_all(deadline);
    while (n_open > 0 && now_ns() < deadline && conns[0].st == ST_OPEN) poll_once(10);
    while (n_open > 0 && now_ns() < deadline) poll_once(10); /* close handshake */
    window_end(now_ns());
    close_all(1.0);
    if (messages != 1) record_error("probe: no echo");
    return (double)(w_end_ns - w_start_ns) / 1e9;
}

static double run_idle(void) {
    uint64_t deadline = now_ns() + sec_to_ns(opt_open_timeout);
    open_all(deadline);
    printf("READY %d\n", n_open);
    fflush(stdout);
    window_begin(now_ns());
    uint64_t until = now_ns() + sec_to_ns(opt_hold);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    int stdin_watch = epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) == 0;
    int lost_before = 0;
    while (now_ns() < until) {
        struct epoll_event evs[256];
        int n = epoll_wait(epfd, evs, 256, 50);
        int quit = 0;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                quit = 1; /* a line (or EOF) on stdin */
                continue;
            }
            on_event((conn *)evs[i].data.ptr, evs[i].events);
        }
        if (n_open < lost_before) record_error("idle: %d connections lost while holding", lost_before - n_open);
        lost_before = n_open;
        if (quit) break;
    }
    if (stdin_watch) epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
    window_end(now_ns());
    close_all(3.0);
    return (double)(w_end_ns - w_start_ns) / 1e9;
}

static double run_connrate(void) {
    uint64_t t0 = now_ns();
    uint64_t w0 = t0 + sec_to_ns(opt_warmup), w1 = w0 + sec_to_ns(opt_duration);
    uint64_t hard = w1 + sec_to_ns(5);
    int begun = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (!begun && t >= w0) {
            window_begin(t);
            measuring = 1;
            begun = 1;
        }
        if (begun && measuring && t >= w1) {
            measuring = 0;
            window_end(t);
        }
        int live = 0;
        for (int i = 0; i < n_conns; i++) {
            conn *c = &conns[i];
            if (c->fd >= 0) {
                live++;
                /* a single attempt may not hang: 5 s per connection */
                if (t > c->t_connect && t - c->t_connect > sec_to_ns(5)) {
                    record_error("conn %u: connection attempt took over 5 s (state %d)", c->id, c->st);
                    conn_close_fd(c);
                    live--;
                }
            } else if (measuring || !begun) {
                c->retries = 0;
                c->st = ST_UNUSED;
                if (start_connect(c) == 0) live++;
            }
        }
        if (begun && !measuring && live == 0) break;
        if (t > hard) break;
        poll_once(5);
    }
    if (measuring) {
        measuring = 0;
        window_end(now_ns());
    }
    for (int i = 0; i < n_conns; i++) conn_close_fd(&conns[i]);
    return (double)(w_end_ns - w_start_ns) / 1e9;
}

static double run_broadcast(void) {
    if (n_conns < 2) {
        fprintf(stderr, "broadcast needs --conns >= 2\n");
        exit(2);
    }
    uint64_t deadline = now_ns() + sec_to_ns(opt_open_timeout);
    open_all(deadline);
    if (n_open < n_conns) return 0;
    /* sync: publish until one round reaches every receiver (subscriptions may lag the handshake);
       both bounds scale with --round-timeout (10 s and 0.25 s by default), for slow servers
       such as one under valgrind */
    b_syncing = 1;
    double sync_s = 2 * opt_round_timeout;
    uint64_t sync_deadline = now_ns() + sec_to_ns(sync_s);
    int synced = 0;
    while (!synced && now_ns() < sync_deadline && n_open == n_conns) {
        broadcast_publish();
        uint64_t resend = now_ns() + sec_to_ns(opt_round_timeout / 20);
        while (now_ns() < resend && b_pending > 0 && n_open == n_conns) poll_once(5);
        synced = b_pending == 0;
    }
    if (!synced) {
        record_error("broadcast: %d receivers never got a message within %.0f s", b_pending, sync_s);
        close_all(2.0);
        return 0;
    }
    b_syncing = 0;
    uint64_t t0 = now_ns();
    uint64_t w0 = t0 + sec_to_ns(opt_warmup), w1 = w0 + sec_to_ns(opt_duration);
    int begun = 0;
    while (n_open == n_conns) {
        uint64_t t = now_ns();
        if (b_pending == 0) {
            if (!begun && t >= w0) {
                window_begin(t);
                measuring = 1;
                begun = 1;
            }
            if (t >= w1) break;
            broadcast_publish();
        } else if (t - b_sent_at > sec_to_ns(opt_round_timeout)) {
            record_error("broadcast: round %u incomplete after %.1f s (%d receivers missing)", b_seq,
                         opt_round_timeout, b_pending);
            break;
        }
        poll_once(b_pending ? 5 : 0);
    }
    if (begun) {
        measuring = 0;
        window_end(now_ns());
    } else {
        window_begin(now_ns());
        window_end(now_ns());
    }
    if (n_open < n_conns) record_error("broadcast: %d connections lost", n_conns - n_open);
    close_all(3.0);
    return (double)(w_end_ns - w_start_ns) / 1e9;
}

/* ---------------------------------------------------------------- main */

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --mode probe|echo|idle|connrate|broadcast --port N [--path P] [--conns N]\n"
            "               [--size BYTES] [--warmup S] [--duration S] [--hold S] [--concurrency K]\n"
            "               [--open-timeout S] [--open-concurrency K] [--round-timeout S] [--stall-timeout S]\n"
            "               [--server-pids PID,PID,...] [--json 0|1]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        i++;
        if (!strcmp(a, "--mode")) {
            int found = 0;
            for (int m = 0; m < 5; m++)
                if (!strcmp(v, MODE_NAMES[m])) {
                    opt_mode = (enum mode)m;
                    found = 1;
                }
            if (!found) usage();
        } else if (!strcmp(a, "--port"))
            opt_port = atoi(v);
        else if (!strcmp(a, "--path"))
            opt_path = v;
        else if (!strcmp(a, "--conns"))
            opt_conns = atoi(v);
        else if (!strcmp(a, "--size"))
            opt_size = (size_t)atol(v);
        else if (!strcmp(a, "--warmup"))
            opt_warmup = atof(v);
        else if (!strcmp(a, "--duration"))
            opt_duration = atof(v);
        else if (!strcmp(a, "--hold"))
            opt_hold = atof(v);
        else if (!strcmp(a, "--concurrency"))
            opt_concurrency = atoi(v);
        else if (!strcmp(a, "--open-timeout"))
            opt_open_timeout = atof(v);
        else if (!strcmp(a, "--open-concurrency"))
            opt_open_concurrency = atoi(v);
        else if (!strcmp(a, "--round-timeout"))
            opt_round_timeout = atof(v);
        else if (!strcmp(a, "--stall-timeout"))
            opt_stall_timeout = atof(v);
        else if (!strcmp(a, "--json"))
            opt_json = atoi(v);
        else if (!strcmp(a, "--server-pids"))
            snprintf(opt_server_pids, sizeof opt_server_pids, "%s", v);
        else
            usage();
    }
    if (!opt_path) opt_path = opt_mode == MODE_BROADCAST ? "/broadcast" : "/ws";
    size_t json_frame = strlen(JSON_HEAD) + ID_LEN + strlen(JSON_MIDDLE) + strlen(JSON_TAIL);
    if (opt_port <= 0 || opt_port > 65535 || opt_size < ID_LEN || (opt_json && opt_size < json_frame) || opt_size > (16u << 20) || opt_warmup < 0 ||
        opt_duration <= 0 || opt_duration > 600 || opt_hold < 0 || opt_hold > 3600 || opt_open_timeout <= 0 ||
        opt_open_timeout > 600 || opt_open_concurrency < 1 || opt_concurrency < 1 || opt_concurrency > 1000 ||
        strlen(opt_path) > 200 || opt_path[0] != '/') {
        fprintf(stderr, "loadgen: option out of range\n");
        usage();
    }
    if (opt_mode == MODE_PROBE) opt_conns = 1;
    if (opt_mode == MODE_CONNRATE) opt_conns = opt_concurrency;
    if (opt_conns < 1 || opt_conns > MAX_CONNS) {
        fprintf(stderr, "loadgen: --conns must be 1..%d\n", MAX_CONNS);
        exit(2);
    }
    signal(SIGPIPE, SIG_IGN);
    /* hard stop: no run may outlive its options by much */
    double budget = opt_open_timeout + opt_warmup + opt_duration + 30 + (opt_mode == MODE_IDLE ? opt_hold : 0);
    alarm((unsigned)budget + 1);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    memset(&server_addr, 0, sizeof server_addr);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)opt_port);
    server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* 127.0.0.1, always */

    handshake_len = (size_t)snprintf(handshake_req, sizeof handshake_req,
                                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                                     "Sec-WebSocket-Version: 13\r\n\r\n",
                                     opt_path, opt_port, WS_KEY);

    filler = malloc(opt_size);
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < opt_size; i++) filler[i] = (uint8_t)alphabet[(i * 13 + i / 97) & 63];
    if (opt_json) { /* {"id":"<prefix>","text":"<filler>"}: the filler's alphabet needs no escapes */
        prefix_at = strlen(JSON_HEAD);
        memcpy(filler, JSON_HEAD, prefix_at);
        memcpy(filler + prefix_at + ID_LEN, JSON_MIDDLE, strlen(JSON_MIDDLE));
        memcpy(filler + opt_size - strlen(JSON_TAIL), JSON_TAIL, strlen(JSON_TAIL));
    }
    {
        uint8_t code[2] = {0x03, 0xe8}; /* 1000 */
        close_frame[0] = 0x88;
        close_frame[1] = 0x80 | 2;
        memcpy(close_frame + 2, MASK_KEY, 4);
        close_frame[6] = code[0] ^ MASK_KEY[0];
        close_frame[7] = code[1] ^ MASK_KEY[1];
    }

    epfd = epoll_create1(EPOLL_CLOEXEC);
    n_conns = opt_conns;
    conns = calloc((size_t)n_conns, sizeof(conn));
    for (int i = 0; i < n_conns; i++) {
        conns[i].fd = -1;
        conns[i].id = (uint32_t)i;
        conns[i].in_cap = opt_size + 4096 > 16384 ? opt_size + 4096 : 16384;
        if (opt_mode == MODE_IDLE || opt_mode == MODE_CONNRATE) conns[i].in_cap = 4096;
        conns[i].in = malloc(conns[i].in_cap);
        if (opt_mode != MODE_IDLE && opt_mode != MODE_CONNRATE) build_frame(&conns[i]);
    }

    double window = 0;
    switch (opt_mode) {
    case MODE_PROBE: window = run_probe(); break;
    case MODE_ECHO: window = run_echo(); break;
    case MODE_IDLE: window = run_idle(); break;
    case MODE_CONNRATE: window = run_connrate(); break;
    case MODE_BROADCAST: window = run_broadcast(); break;
    }
    if (opt_mode != MODE_IDLE && opt_mode != MODE_CONNRATE && n_open == 0 && n_opened_total == 0)
        record_error("no connection could be opened");
    print_result(window);
    return n_errors ? 1 : 0;
}
