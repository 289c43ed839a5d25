/* `dlprep fashion-mnist`: the four gzip'd IDX files of Fashion-MNIST (as the
 * Debian package dataset-fashion-mnist installs them) to HDF5 shards.
 *
 * IDX is a big-endian header (magic 0x00000803 for a rank-3 uint8 array of
 * images, 0x00000801 for rank-1 uint8 labels, then one uint32 per dimension)
 * followed by the raw bytes in row-major order, which is already the
 * (N, 1, H, W) layout of our shards, so a split is the decompressed file
 * minus its header. zlib's gzread also passes plain (uncompressed) files
 * through, so unpacked copies work too. Everything about the files is
 * checked before a shard is written: magic, sizes against the header, image
 * and label counts agreeing, labels in 0..9. */
#include "data/dlprep/dlprep.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u
#define FM_CLASSES 10

static const char *const fm_class_names[FM_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

/* One decompressed IDX file. */
typedef struct {
    uint8_t *buf;
    size_t len;
    uint32_t dims[3];
    const uint8_t *data;   /* buf + header */
} idx_file;

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Reads the whole (possibly gzip'd) file into f->buf. */
static dlt_status gunzip_file(const char *path, idx_file *f)
{
    gzFile z = gzopen(path, "rb");
    if (!z) return DLT_ERR(DLT_ERR_IO, "%s: cannot open: %s", path, strerror(errno ? errno : ENOENT));
    size_t cap = 1 << 20, len = 0;
    uint8_t *buf = malloc(cap);
    dlt_status st = DLT_OK;
    for (;;) {
        if (!buf) {
            st = DLT_ERR(DLT_ERR_NOMEM, "%s: out of memory decompressing", path);
            break;
        }
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                continue;
            }
            buf = nb;
            cap *= 2;
        }
        int got = gzread(z, buf + len, (unsigned)(cap - len > (1u << 30) ? 1u << 30 : cap - len));
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(z, &zerr);
            st = DLT_ERR(DLT_ERR_IO, "%s: corrupt gzip data (%s)", path, msg);
            break;
        }
        if (got == 0) break;
        len += (size_t)got;
    }
    gzclose(z);
    if (st != DLT_OK) {
        free(buf);
        return st;
    }
    f->buf = buf;
    f->len = len;
    return DLT_OK;
}

/* Loads an IDX file of rank `rank` (3: images, 1: labels) and checks it. */
static dlt_status load_idx(const char *path, int rank, idx_file *f)
{
    memset(f, 0, sizeof *f);
    DLT_CHECK(gunzip_file(path, f));
    uint32_t want = rank == 3 ? IDX_IMAGES_MAGIC : IDX_LABELS_MAGIC;
    size_t header = 4 + 4 * (size_t)rank;
    if (f->len < header || be32(f->buf) != want) {
        dlt_status st = DLT_ERR(DLT_ERR_IO, "%s: not an IDX %s file (magic 0x%08x, expected 0x%08x)",
                                path, rank == 3 ? "image" : "label",
                                f->len >= 4 ? be32(f->buf) : 0u, want);
        free(f->buf);
        f->buf = NULL;
        return st;
    }
    uint64_t bytes = 1;
    for (int i = 0; i < rank; i++) {
        f->dims[i] = be32(f->buf + 4 + 4 * i);
        bytes *= f->dims[i];
    }
    if (f->len - header != bytes) {
        dlt_status st = DLT_ERR(DLT_ERR_IO,
                                "%s: header promises %llu bytes of data but the file has %llu (%s)",
                                path, (unsigned long long)bytes,
                                (unsigned long long)(f->len - header),
                                f->len - header < bytes ? "truncated download?" : "trailing data");
        free(f->buf);
        f->buf = NULL;
        return st;
    }
    f->data = f->buf + header;
    return DLT_OK;
}

/* fill() context: one split held in memory. */
typedef struct {
    const idx_file *images, *labels;
    size_t sample;
} fm_split;

static dlt_status fm_fill(void *ctx, int64_t first, int64_t n, uint8_t *images, int64_t *labels)
{
    const fm_split *s = ctx;
    memcpy(images, s->images->data + (size_t)first * s->sample, (size_t)n * s->sample);
    for (int64_t i = 0; i < n; i++) labels[i] = s->labels->data[first + i];
    return DLT_OK;
}

/* Converts one split (prefix "train" or "t10k") to shards named split. */
static dlt_status convert(const dlt_prep_out *out, const char *srcdir, const char *prefix,
                          const char *split)
{
    char ipath[4096], lpath[4096], source[8400];
    idx_file im, lb;
    snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", srcdir, prefix);
    snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", srcdir, prefix);
    DLT_CHECK(load_idx(ipath, 3, &im));
    dlt_status st = load_idx(lpath, 1, &lb);
    if (st != DLT_OK) {
        free(im.buf);
        return st;
    }
    if (im.dims[0] != lb.dims[0]) {
        st = DLT_ERR(DLT_ERR_IO, "%s has %u images but %s has %u labels", ipath, im.dims[0], lpath,
                     lb.dims[0]);
        goto done;
    }
    if (im.dims[0] == 0 || im.dims[1] == 0 || im.dims[2] == 0) {
        st = DLT_ERR(DLT_ERR_IO, "%s: no images (header says %u x %u x %u)", ipath, im.dims[0],
                     im.dims[1], im.dims[2]);
        goto done;
    }
    for (uint32_t i = 0; i < lb.dims[0]; i++)
        if (lb.data[i] >= FM_CLASSES) {
            st = DLT_ERR(DLT_ERR_IO, "%s: label %u at index %u is not a Fashion-MNIST class (0..9)",
                         lpath, lb.data[i], i);
            goto done;
        }
    snprintf(source, sizeof source, "Fashion-MNIST: %s, %s", ipath, lpath);
    fm_split ctx = { &im, &lb, (size_t)im.dims[1] * im.dims[2] };
    dlt_prep_split s = {
        /* .split       = */ split,
        /* .n           = */ im.dims[0],
        /* .c, .h, .w   = */ 1, (int)im.dims[1], (int)im.dims[2],
        /* .class_names = */ fm_class_names,
        /* .n_classes   = */ FM_CLASSES,
        /* .source      = */ source,
        /* .fill        = */ fm_fill,
        /* .ctx         = */ &ctx,
    };
    int shards = 0;
    st = dlt_prep_write_split(out, &s, &shards);
    if (st == DLT_OK)
        printf("dlprep: %s: %u samples of [1, %u, %u] in %d shard(s) %s/%s-*.h5\n", split,
               im.dims[0], im.dims[1], im.dims[2], shards, out->outdir, split);
done:
    free(im.buf);
    free(lb.buf);
    return st;
}

/* Contract (dlprep.h): writes train-*.h5 (60000 samples) and test-*.h5
 * (10000) from srcdir; DLT_ERR_IO naming the file for a missing or
 * malformed input. */
dlt_status dlt_prep_fashion_mnist(const dlt_prep_out *out, const char *srcdir)
{
    DLT_CHECK(convert(out, srcdir, "train", "train"));
    return convert(out, srcdir, "t10k", "test");
}
