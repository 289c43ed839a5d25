/* TensorBoard event files: scalar summaries that TensorBoard itself reads.
 *
 * A file events.out.tfevents.<10-digit unix time>.<host>.<pid>.<n> in the
 * run directory holds TFRecord records (length, masked CRC-32C of the
 * length, an Event protobuf, masked CRC-32C of it); the first Event carries
 * file_version "brain.Event:2", the others a Summary of simple values.
 * Written by rank 0 only, flushed after every event so a live TensorBoard
 * sees the run as it goes. */
#ifndef DLT_TBOARD_H
#define DLT_TBOARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "launcher/metrics.h"

typedef struct dlt_tboard dlt_tboard;

typedef struct {
    const char *tag;   /* e.g. "train/loss" */
    double value;
} dlt_scalar;

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of data[0..n),
 * continuing from crc (0 to start): dlt_crc32c(0, "123456789", 9) is
 * 0xE3069283. */
uint32_t dlt_crc32c(uint32_t crc, const void *data, size_t n);

/* TFRecord's masked CRC: rotated right by 15 bits plus 0xa282ead8, so a CRC
 * stored inside checksummed data does not cancel out. */
uint32_t dlt_crc32c_mask(uint32_t crc);

/* Creates a new event file in dir (which must exist) and writes the
 * file-version event. Never overwrites: the last name part counts up when a
 * file of the same second, host and pid exists. */
dlt_status dlt_tboard_open(const char *dir, dlt_tboard **out);

/* Writes one Event at step holding the n scalars (stored as float32).
 * Flushed before returning. */
dlt_status dlt_tboard_scalars(dlt_tboard *tb, int64_t step, const dlt_scalar *v, int n);

/* Writes a metrics record as scalars "<split>/<field>" (loss, accuracy,
 * samples_per_s, lr, grad_norm, data_wait) plus "<split>/loss_scale" for
 * training records, and "time/<phase>_s" (data, forward, backward, comm,
 * optimizer: seconds per step) when r has a time breakdown. Fields that are
 * NaN ("not applicable" in dlt_record) are left out, except the loss. */
dlt_status dlt_tboard_record(dlt_tboard *tb, const dlt_record *r, double loss_scale);

/* The training loop's call: writes r through dlt_tboard_record when *tb is
 * open (NULL: nothing). A failed write (disk full) must not end a long run
 * over its logs: it prints one warning on stderr, closes the file and sets
 * *tb to NULL. */
void dlt_tboard_log(dlt_tboard **tb, const dlt_record *r, double loss_scale);

/* The event file's path. */
const char *dlt_tboard_path(const dlt_tboard *tb);

/* Closes the file; tb may be NULL. */
void dlt_tboard_close(dlt_tboard *tb);

#endif
