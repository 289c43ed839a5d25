/* Checkpoint files on disk: atomic writes, manifests, discovery, pruning.
 *
 * Design. A checkpoint NAME is two files in one directory: NAME.h5 (see
 * checkpoint.c) and NAME.manifest, a small JSON object
 *   {"format": "dltrain-checkpoint-manifest", "version": 1, "step": S,
 *    "world": W, "files": [{"name": "NAME.h5", "bytes": B, "crc32": C}]}
 * The manifest is written last and deleted first, so its presence, and the
 * sizes and CRC-32 (zlib) it lists, is what makes a checkpoint complete.
 * Every file goes through NAME.ext.tmp -> fsync -> rename -> fsync of the
 * directory, so after a crash (kill -9, node failure, full disk) the
 * directory holds only whole files and perhaps a stale .tmp, which the next
 * save of that name overwrites. Step checkpoints are "ckpt-<step, 8 digits>";
 * "best" is the best-by-metric one, never pruned. */
#include "launcher/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define MANIFEST_FORMAT "dltrain-checkpoint-manifest"

dlt_status dlt_file_crc32(const char *path, uint32_t *crc, int64_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return DLT_ERR(DLT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    static unsigned char buf[1 << 16];
    uLong c = crc32(0L, Z_NULL, 0);
    int64_t n = 0;
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        c = crc32(c, buf, (uInt)got);
        n += (int64_t)got;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) return DLT_ERR(DLT_ERR_IO, "%s: read error", path);
    *crc = (uint32_t)c;
    *size = n;
    return DLT_OK;
}

static dlt_status fsync_path(const char *path, int dir)
{
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return DLT_ERR(DLT_ERR_IO, "%s: cannot open for fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    /* some file systems cannot fsync a directory; the rename is still atomic */
    if (rc != 0 && !(dir && (err == EINVAL || err == EBADF)))
        return DLT_ERR(DLT_ERR_IO, "%s: fsync failed: %s", path, strerror(err));
    return DLT_OK;
}

static void dir_of(const char *path, char *dir, size_t len)
{
    snprintf(dir, len, "%s", path);
    char *s = strrchr(dir, '/');
    if (s == dir)
        s[1] = '\0';
    else if (s)
        *s = '\0';
    else
        snprintf(dir, len, ".");
}

static const char *base_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* NAME.manifest for NAME.h5 (or any path without .h5: PATH.manifest). */
static void manifest_of(const char *h5, char *out, size_t len)
{
    size_t l = strlen(h5);
    if (l > 3 && !strcmp(h5 + l - 3, ".h5")) l -= 3;
    snprintf(out, len, "%.*s.manifest", (int)l, h5);
}

static dlt_status write_manifest(const char *h5, int64_t step, int world)
{
    uint32_t crc;
    int64_t size;
    DLT_CHECK(dlt_file_crc32(h5, &crc, &size));
    char man[1100], tmp[1120];
    manifest_of(h5, man, sizeof man);
    snprintf(tmp, sizeof tmp, "%s.tmp", man);
    FILE *f = fopen(tmp, "w");
    if (!f) return DLT_ERR(DLT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    fprintf(f, "{\"format\": \"%s\", \"version\": 1, \"step\": %lld, \"world\": %d, \"files\": "
               "[{\"name\": \"%s\", \"bytes\": %lld, \"crc32\": %lu}]}\n",
            MANIFEST_FORMAT, (long long)step, world, base_of(h5), (long long)size, (unsigned long)crc);
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    int err = errno;
    if (fclose(f) != 0 && !bad) bad = 1, err = errno;
    if (bad || rename(tmp, man) != 0) {
        if (!bad) err = errno;
        remove(tmp);
        return DLT_ERR(DLT_ERR_IO, "%s: cannot write: %s", man, strerror(err));
    }
    return DLT_OK;
}

dlt_status dlt_ckpt_save(const dlt_ckpt_src *src, const dlt_train_pos *pos, const char *path)
{
    char tmp[1100], man[1100], dir[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    manifest_of(path, man, sizeof man);
    dir_of(path, dir, sizeof dir);
    dlt_status st = dlt_ckpt_write_h5(src, pos, tmp);
    if (st == DLT_OK) st = fsync_path(tmp, 0);
    if (st != DLT_OK) {
        remove(tmp);
        return st;
    }
    /* replacing a name (best): the old one stops counting before it changes */
    if (remove(man) == 0) fsync_path(dir, 1);
    if (rename(tmp, path) != 0) {
        int err = errno;
        remove(tmp);
        return DLT_ERR(DLT_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(err));
    }
    DLT_CHECK(fsync_path(dir, 1));
    DLT_CHECK(write_manifest(path, pos->step, src->world));
    return fsync_path(dir, 1);
}

/* ------------------------------------------------------------ manifests */

typedef struct {
    int64_t step;
    char h5[1024];
} entry;

static int parse_i64(const char *text, const char *key, long long *v)
{
    const char *p = strstr(text, key);
    return p && sscanf(p + strlen(key), " : %lld", v) == 1;
}

/* Reads a manifest; on success the checkpoint's .h5 path and step. */
static dlt_status read_manifest(const char *man, entry *e, long long *bytes, unsigned long *crc)
{
    FILE *f = fopen(man, "r");
    if (!f) return DLT_ERR(DLT_ERR_IO, "%s: cannot open: %s", man, strerror(errno));
    char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    long long step, crcv;
    char name[512];
    const char *np = strstr(text, "\"name\"");
    if (!strstr(text, MANIFEST_FORMAT) || !parse_i64(text, "\"step\"", &step) ||
        !parse_i64(text, "\"bytes\"", bytes) || !parse_i64(text, "\"crc32\"", &crcv) || !np ||
        sscanf(np + 6, " : \"%511[^\"]\"", name) != 1)
        return DLT_ERR(DLT_ERR_IO, "%s: not a valid manifest (truncated?)", man);
    char dir[1024];
    dir_of(man, dir, sizeof dir);
    if ((size_t)snprintf(e->h5, sizeof e->h5, "%.*s/%s", 500, dir, name) >= sizeof e->h5)
        return DLT_ERR(DLT_ERR_IO, "%s: path too long", man);
    e->step = step;
    *crc = (unsigned long)crcv;
    return DLT_OK;
}

static dlt_status verify_manifest(const char *man, entry *e)
{
    long long bytes;
    unsigned long crc;
    DLT_CHECK(read_manifest(man, e, &bytes, &crc));
    uint32_t got;
    int64_t size;
    if (dlt_file_crc32(e->h5, &got, &size) != DLT_OK)
        return DLT_ERR(DLT_ERR_IO, "%s: listed in %s but missing", e->h5, base_of(man));
    if (size != bytes)
        return DLT_ERR(DLT_ERR_IO, "%s: %lld bytes but its manifest says %lld (truncated)", e->h5,
                       (long long)size, bytes);
    if (got != crc)
        return DLT_ERR(DLT_ERR_IO, "%s: CRC32 %lu does not match its manifest's %lu (corrupt)", e->h5,
                       (unsigned long)got, crc);
    return DLT_OK;
}

dlt_status dlt_ckpt_verify(const char *h5_path)
{
    char man[1100];
    manifest_of(h5_path, man, sizeof man);
    if (access(man, F_OK) != 0)
        return DLT_ERR(DLT_ERR_IO, "%s: no manifest %s, so the checkpoint is incomplete", h5_path, man);
    entry e;
    return verify_manifest(man, &e);
}

/* Manifests of dir, newest step first; *n entries in a malloc'd *out. */
static dlt_status list_manifests(const char *dir, int steps_only, entry **out, int *n, int warn)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? DLT_OK : DLT_ERR(DLT_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    int cap = 0;
    struct dirent *de;
    dlt_status st = DLT_OK;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        size_t l = strlen(nm);
        if (l < 10 || strcmp(nm + l - 9, ".manifest")) continue;
        if (steps_only && strncmp(nm, "ckpt-", 5)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            entry *g = realloc(*out, (size_t)cap * sizeof *g);
            if (!g) {
                st = DLT_ERR(DLT_ERR_NOMEM, "out of memory listing %s", dir);
                break;
            }
            *out = g;
        }
        char man[1400];
        snprintf(man, sizeof man, "%s/%s", dir, nm);
        long long bytes;
        unsigned long crc;
        if (read_manifest(man, &(*out)[*n], &bytes, &crc) != DLT_OK) {
            if (warn) fprintf(stderr, "dltrain: warning: skipping checkpoint: %s\n", dlt_last_error());
            continue;
        }
        (*n)++;
    }
    closedir(d);
    for (int i = 1; i < *n; i++) /* newest first; few entries */
        for (int j = i; j > 0 && (*out)[j].step > (*out)[j - 1].step; j--) {
            entry t = (*out)[j];
            (*out)[j] = (*out)[j - 1];
            (*out)[j - 1] = t;
        }
    return st;
}

dlt_status dlt_ckpt_find_latest(const char *dir, int warn, char *path, size_t len, int *found)
{
    entry *es;
    int n;
    *found = 0;
    DLT_CHECK(list_manifests(dir, 0, &es, &n, warn));
    for (int i = 0; i < n && !*found; i++) {
        char man[1100];
        manifest_of(es[i].h5, man, sizeof man);
        entry e;
        if (verify_manifest(man, &e) != DLT_OK) {
            if (warn) fprintf(stderr, "dltrain: warning: skipping checkpoint: %s\n", dlt_last_error());
            continue;
        }
        snprintf(path, len, "%s", es[i].h5);
        *found = 1;
    }
    free(es);
    return DLT_OK;
}

dlt_status dlt_ckpt_prune(const char *dir, int keep)
{
    entry *es;
    int n;
    DLT_CHECK(list_manifests(dir, 1, &es, &n, 0));
    for (int i = keep; i < n; i++) {
        char man[1100];
        manifest_of(es[i].h5, man, sizeof man);
        /* manifest first: a half-deleted checkpoint is an incomplete one */
        if (remove(man) != 0 && errno != ENOENT) continue;
        remove(es[i].h5);
    }
    free(es);
    return n > keep ? fsync_path(dir, 1) : DLT_OK;
}
