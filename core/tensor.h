/* Shapes and tensor views.
 *
 * A dlt_tensor is a view: it never owns its data. All memory is owned by an
 * arena (parameters, gradients, activations, workspace) that the model graph
 * allocates once at build time through the backend, so the training step
 * itself never allocates. Layout is row-major, images NCHW; d[0] is the batch
 * dimension and holds the largest batch the buffer was planned for. */
#ifndef DLT_TENSOR_H
#define DLT_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define DLT_MAX_DIMS 4

typedef struct {
    int ndim;
    int64_t d[DLT_MAX_DIMS];
} dlt_shape;

typedef struct {
    float *data;      /* backend (device) memory */
    dlt_shape shape;
} dlt_tensor;

/* Number of elements of the whole shape, and of one sample (d[1..]). */
static inline int64_t dlt_shape_numel(const dlt_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= s->d[i];
    return n;
}

static inline int64_t dlt_shape_sample_numel(const dlt_shape *s)
{
    int64_t n = 1;
    for (int i = 1; i < s->ndim; i++) n *= s->d[i];
    return n;
}

/* "[64, 16, 28, 28]" into buf; returns buf. */
const char *dlt_shape_str(const dlt_shape *s, char *buf, size_t len);

#endif
