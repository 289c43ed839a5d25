/* TensorBoard event writer tests: CRC-32C against published vectors (the
 * check value of "123456789" and RFC 3720's iSCSI vectors), the TFRecord
 * mask, and a written file read back record by record: both CRCs of every
 * record, the file-version event first, then the scalars (tags, values,
 * step; a value of exactly 0 still present). TensorBoard's own reader is
 * run on real training output by tests/integration/test_logging.sh. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "launcher/tboard.h"
#include "tboard.pb-c.h"

START_TEST(crc_vectors)
{
    ck_assert_uint_eq(dlt_crc32c(0, "123456789", 9), 0xE3069283u);
    uint8_t b[32];
    memset(b, 0, sizeof b);
    ck_assert_uint_eq(dlt_crc32c(0, b, 32), 0x8A9136AAu);
    memset(b, 0xff, sizeof b);
    ck_assert_uint_eq(dlt_crc32c(0, b, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)i;
    ck_assert_uint_eq(dlt_crc32c(0, b, 32), 0x46DD794Eu);
    /* continuing a CRC over a split buffer gives the CRC of the whole */
    ck_assert_uint_eq(dlt_crc32c(dlt_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
    ck_assert_uint_eq(dlt_crc32c(0, "", 0), 0u);
}
END_TEST

START_TEST(crc_mask)
{
    /* rotate right by 15, add the constant (mod 2^32) */
    ck_assert_uint_eq(dlt_crc32c_mask(0), 0xa282ead8u);
    ck_assert_uint_eq(dlt_crc32c_mask(0x8000u), 0xa282ead8u + 1u);
    ck_assert_uint_eq(dlt_crc32c_mask(0xE3069283u), (uint32_t)(((0xE3069283u >> 15) | (0xE3069283u << 17)) + 0xa282ead8u));
}
END_TEST

static uint64_t get_le(const uint8_t *b, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

/* Reads every record of path, checking framing and CRCs; returns the events. */
static int read_events(const char *path, Tboard__Event **ev, int cap)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    int n = 0;
    uint8_t hdr[12];
    while (fread(hdr, 1, 12, f) == 12) {
        ck_assert_int_lt(n, cap);
        uint64_t len = get_le(hdr, 8);
        ck_assert_uint_eq(get_le(hdr + 8, 4), dlt_crc32c_mask(dlt_crc32c(0, hdr, 8)));
        uint8_t *data = malloc(len + 4);
        ck_assert_ptr_nonnull(data);
        ck_assert_uint_eq(fread(data, 1, len + 4, f), len + 4);
        ck_assert_uint_eq(get_le(data + len, 4), dlt_crc32c_mask(dlt_crc32c(0, data, len)));
        ev[n] = tboard__event__unpack(NULL, len, data);
        ck_assert_ptr_nonnull(ev[n]);
        free(data);
        n++;
    }
    fclose(f);
    return n;
}

START_TEST(write_and_read_back)
{
    char dir[] = "/tmp/dlt-tboard.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    dlt_tboard *tb = NULL, *tb2 = NULL;
    ck_assert_int_eq(dlt_tboard_open(dir, &tb), DLT_OK);
    /* a second writer in the same second and process gets its own file */
    ck_assert_int_eq(dlt_tboard_open(dir, &tb2), DLT_OK);
    ck_assert_str_ne(dlt_tboard_path(tb), dlt_tboard_path(tb2));
    dlt_tboard_close(tb2);

    const char *base = strrchr(dlt_tboard_path(tb), '/') + 1;
    long long secs;
    char rest[256];
    ck_assert_int_eq(sscanf(base, "events.out.tfevents.%10lld.%255s", &secs, rest), 2);
    ck_assert(base[strlen("events.out.tfevents.") + 10] == '.');
    ck_assert(llabs(secs - (long long)time(NULL)) < 60);

    dlt_scalar s[] = { { "train/loss", 2.5 }, { "train/data_wait", 0.0 } };
    ck_assert_int_eq(dlt_tboard_scalars(tb, 7, s, 2), DLT_OK);
    dlt_record r = { .split = "eval", .step = 12, .epoch = 0, .loss = 0.75, .accuracy = 0.5,
                     .samples_per_s = NAN, .lr = NAN, .grad_norm = NAN, .data_wait = NAN };
    ck_assert_int_eq(dlt_tboard_record(tb, &r, 1.0), DLT_OK);
    char path[1300];
    snprintf(path, sizeof path, "%s", dlt_tboard_path(tb));
    dlt_tboard_close(tb);

    Tboard__Event *ev[8];
    int n = read_events(path, ev, 8);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(ev[0]->what_case, TBOARD__EVENT__WHAT_FILE_VERSION);
    ck_assert_str_eq(ev[0]->file_version, "brain.Event:2");
    ck_assert(ev[0]->wall_time > 1e9);

    ck_assert_int_eq(ev[1]->what_case, TBOARD__EVENT__WHAT_SUMMARY);
    ck_assert_int_eq(ev[1]->step, 7);
    ck_assert_uint_eq(ev[1]->summary->n_value, 2);
    ck_assert_str_eq(ev[1]->summary->value[0]->tag, "train/loss");
    ck_assert(ev[1]->summary->value[0]->simple_value == 2.5f);
    ck_assert_str_eq(ev[1]->summary->value[1]->tag, "train/data_wait");
    ck_assert_int_eq(ev[1]->summary->value[1]->value_case, TBOARD__SUMMARY_VALUE__VALUE_SIMPLE_VALUE);
    ck_assert(ev[1]->summary->value[1]->simple_value == 0.0f);

    /* eval record: loss and accuracy only (the NaN fields are not applicable) */
    ck_assert_int_eq(ev[2]->step, 12);
    ck_assert_uint_eq(ev[2]->summary->n_value, 2);
    ck_assert_str_eq(ev[2]->summary->value[0]->tag, "eval/loss");
    ck_assert(ev[2]->summary->value[0]->simple_value == 0.75f);
    ck_assert_str_eq(ev[2]->summary->value[1]->tag, "eval/accuracy");
    for (int i = 0; i < n; i++) tboard__event__free_unpacked(ev[i], NULL);

    DIR *d = opendir(dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[1300];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}
END_TEST

START_TEST(open_fails_cleanly)
{
    dlt_tboard *tb = (dlt_tboard *)1;
    ck_assert_int_eq(dlt_tboard_open("/nonexistent/dir/for/dlt", &tb), DLT_ERR_IO);
    ck_assert_ptr_null(tb);
    ck_assert_ptr_nonnull(strstr(dlt_last_error(), "/nonexistent/dir/for/dlt"));
}
END_TEST

static Suite *tboard_suite(void)
{
    Suite *s = suite_create("tboard");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, crc_vectors);
    tcase_add_test(tc, crc_mask);
    tcase_add_test(tc, write_and_read_back);
    tcase_add_test(tc, open_fails_cleanly);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tboard_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
