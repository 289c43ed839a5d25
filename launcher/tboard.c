/* TensorBoard event files (see tboard.h).
 *
 * Events are protobuf messages built with protobuf-c from launcher/tboard.proto,
 * a subset of TensorFlow's event.proto/summary.proto with the same field
 * numbers, and framed as TFRecords: uint64 length (little endian), masked
 * CRC-32C of those 8 bytes, the message, masked CRC-32C of the message.
 * Debian has no C library for CRC-32C (only a Python one), so it is the
 * classic byte-at-a-time table here; the table is a constant (generated
 * once from the reflected polynomial 0x82F63B78) rather than built at run
 * time, so there is no initialisation and no mutable global.
 *
 * TensorBoard finds event files by "tfevents" in the name and orders them by
 * the name's timestamp; the name pattern is TensorFlow's
 * (events.out.tfevents.<%010d time>.<host>) plus PyTorch's ".<pid>.<n>"
 * suffix so that several writers never share a file. */
#include "launcher/tboard.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tboard.pb-c.h"

#define TB_MAX_SCALARS 16

struct dlt_tboard {
    FILE *f;
    char path[1200];
};

static const uint32_t crc32c_table[256] = {
    0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu,
    0x26a1e7e8u, 0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,
    0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu,
    0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
    0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu,
    0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,
    0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
    0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
    0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu,
    0x1642ae59u, 0xe4292d5au, 0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,
    0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu,
    0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
    0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu,
    0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
    0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu,
    0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
    0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu,
    0x4767748au, 0xb50cf789u, 0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,
    0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u, 0x7198540du, 0x83f3d70eu,
    0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
    0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
    0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,
    0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u,
    0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
    0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu,
    0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,
    0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u, 0x502036a5u,
    0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
    0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u,
    0x0e330a81u, 0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,
    0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u,
    0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
    0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u,
    0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,
    0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
    0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
    0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u,
    0x7fab5e8cu, 0x8dc0dd8fu, 0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,
    0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u,
    0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
    0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u,
    0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
    0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

uint32_t dlt_crc32c(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc32c_table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

uint32_t dlt_crc32c_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

static void put_le(uint8_t *b, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) b[i] = (uint8_t)(v >> (8 * i));
}

static double wall_time(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

/* Packs ev and appends it as one TFRecord; flushes. */
static dlt_status write_event(dlt_tboard *tb, const Tboard__Event *ev)
{
    size_t len = tboard__event__get_packed_size(ev);
    uint8_t *buf = malloc(12 + len + 4);
    if (!buf) return DLT_ERR(DLT_ERR_NOMEM, "%s: out of memory for an event", tb->path);
    put_le(buf, len, 8);
    put_le(buf + 8, dlt_crc32c_mask(dlt_crc32c(0, buf, 8)), 4);
    tboard__event__pack(ev, buf + 12);
    put_le(buf + 12 + len, dlt_crc32c_mask(dlt_crc32c(0, buf + 12, len)), 4);
    size_t put = fwrite(buf, 1, 12 + len + 4, tb->f);
    free(buf);
    if (put != 12 + len + 4 || fflush(tb->f) != 0)
        return DLT_ERR(DLT_ERR_IO, "%s: cannot write: %s", tb->path, strerror(errno));
    return DLT_OK;
}

dlt_status dlt_tboard_open(const char *dir, dlt_tboard **out)
{
    *out = NULL;
    dlt_tboard *tb = calloc(1, sizeof *tb);
    if (!tb) return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    char host[HOST_NAME_MAX + 1] = "localhost";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *c = host; *c; c++)   /* a file name, whatever the host is called */
        if (*c == '/') *c = '_';
    long long now = (long long)time(NULL);
    for (int n = 0; n < 100 && !tb->f; n++) {
        snprintf(tb->path, sizeof tb->path, "%s/events.out.tfevents.%010lld.%s.%ld.%d", dir, now, host,
                 (long)getpid(), n);
        tb->f = fopen(tb->path, "wbx");   /* x: never reuse an existing file */
        if (!tb->f && errno != EEXIST) break;
    }
    if (!tb->f) {
        dlt_status st = DLT_ERR(DLT_ERR_IO, "%s: cannot create: %s", tb->path, strerror(errno));
        free(tb);
        return st;
    }
    Tboard__Event ev = TBOARD__EVENT__INIT;
    ev.wall_time = wall_time();
    ev.what_case = TBOARD__EVENT__WHAT_FILE_VERSION;
    ev.file_version = "brain.Event:2";
    dlt_status st = write_event(tb, &ev);
    if (st != DLT_OK) {
        dlt_tboard_close(tb);
        return st;
    }
    *out = tb;
    return DLT_OK;
}

dlt_status dlt_tboard_scalars(dlt_tboard *tb, int64_t step, const dlt_scalar *v, int n)
{
    if (n < 0 || n > TB_MAX_SCALARS)
        return DLT_ERR(DLT_ERR_INVALID, "%d scalars in one event, at most %d", n, TB_MAX_SCALARS);
    Tboard__SummaryValue vals[TB_MAX_SCALARS], *ptrs[TB_MAX_SCALARS];
    for (int i = 0; i < n; i++) {
        tboard__summary_value__init(&vals[i]);
        vals[i].tag = (char *)v[i].tag;   /* protobuf-c's fields are not const; pack only reads */
        vals[i].value_case = TBOARD__SUMMARY_VALUE__VALUE_SIMPLE_VALUE;
        vals[i].simple_value = (float)v[i].value;
        ptrs[i] = &vals[i];
    }
    Tboard__Summary sum = TBOARD__SUMMARY__INIT;
    sum.n_value = (size_t)n;
    sum.value = ptrs;
    Tboard__Event ev = TBOARD__EVENT__INIT;
    ev.wall_time = wall_time();
    ev.step = step;
    ev.what_case = TBOARD__EVENT__WHAT_SUMMARY;
    ev.summary = &sum;
    return write_event(tb, &ev);
}

dlt_status dlt_tboard_record(dlt_tboard *tb, const dlt_record *r, double loss_scale)
{
    static const char *const fields[] = { "loss", "accuracy", "samples_per_s", "lr", "grad_norm", "data_wait",
                                          "loss_scale" };
    const int nf = (int)(sizeof fields / sizeof fields[0]);
    int train = strcmp(r->split, "train") == 0;
    double vals[] = { r->loss, r->accuracy, r->samples_per_s, r->lr, r->grad_norm, r->data_wait,
                      train ? loss_scale : NAN };
    /* metrics.jsonl's "time_s" phases, in the order of dlt_record */
    static const char *const phases[5] = { "data", "forward", "backward", "comm", "optimizer" };
    char tags[sizeof vals / sizeof vals[0] + 5][64];
    dlt_scalar s[sizeof vals / sizeof vals[0] + 5];
    int n = 0;
    for (int i = 0; i < nf; i++) {
        if (i > 0 && isnan(vals[i])) continue;
        snprintf(tags[n], sizeof tags[n], "%.20s/%s", r->split, fields[i]);
        s[n] = (dlt_scalar){ tags[n], vals[i] };
        n++;
    }
    for (int i = 0; r->time_breakdown && i < 5; i++) {
        snprintf(tags[n], sizeof tags[n], "time/%s_s", phases[i]);
        s[n] = (dlt_scalar){ tags[n], isfinite(r->time_breakdown[i]) ? r->time_breakdown[i] : 0.0 };
        n++;
    }
    return dlt_tboard_scalars(tb, r->step, s, n);
}

void dlt_tboard_log(dlt_tboard **tb, const dlt_record *r, double loss_scale)
{
    if (!*tb || dlt_tboard_record(*tb, r, loss_scale) == DLT_OK) return;
    fprintf(stderr, "dltrain: warning: %s; TensorBoard events stop here\n", dlt_last_error());
    dlt_tboard_close(*tb);
    *tb = NULL;
}

const char *dlt_tboard_path(const dlt_tboard *tb) { return tb->path; }

void dlt_tboard_close(dlt_tboard *tb)
{
    if (!tb) return;
    if (tb->f) fclose(tb->f);
    free(tb);
}
