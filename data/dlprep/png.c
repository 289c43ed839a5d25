/* A minimal PNG writer on libpng for `dlprep preview`: 8-bit RGB, no
 * interlace. libpng reports errors by longjmp; the jump lands here and
 * becomes a dlt_status naming the file, and a half-written file is removed. */
#include <png.h>
#include <setjmp.h>
#include <stdio.h>

#include "data/dlprep/dlprep.h"

/* Contract (dlprep.h): writes rgb (h, w, 3) to path. */
dlt_status dlt_prep_png_write(const char *path, int w, int h, const uint8_t *rgb)
{
    FILE *f = fopen(path, "wb");
    if (!f) return DLT_ERR(DLT_ERR_IO, "%s: cannot create the PNG file", path);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        fclose(f);
        remove(path);
        return DLT_ERR(DLT_ERR_NOMEM, "%s: out of memory in libpng", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        remove(path);
        return DLT_ERR(DLT_ERR_IO, "%s: libpng failed writing the image", path);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * (size_t)w * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(f) != 0) {
        remove(path);
        return DLT_ERR(DLT_ERR_IO, "%s: write failed (disk full?)", path);
    }
    return DLT_OK;
}
