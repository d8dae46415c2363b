/* The kernel table: one row of per-dtype loops for every supported dtype, stamped out
 * from kernel_template.h (one inclusion per dtype, its parameters defined before).
 *
 * Adding a dtype: its key and store functions in keys.h, one inclusion of the template
 * here, one row in mm_types.  mm_type_of finds a row by numpy's kind and itemsize. */
#include "select.h"
#include "keys.h"
#include "filter_hit.h"
#include "window64.h"

#include <string.h>

#define MM_T bool
#define MM_W 8
#define MM_KEY key_bool
#define MM_SPECIAL 0
#include "kernel_template.h"

#define MM_T u8
#define MM_W 8
#define MM_KEY key_u8
#define MM_SPECIAL 0
#include "kernel_template.h"

#define MM_T i8
#define MM_W 8
#define MM_KEY key_i8
#define MM_SPECIAL 0
#include "kernel_template.h"

#define MM_T u16
#define MM_W 16
#define MM_KEY key_u16
#define MM_SPECIAL 0
#include "kernel_template.h"

#define MM_T i16
#define MM_W 16
#define MM_KEY key_i16
#define MM_SPECIAL 0
#include "kernel_template.h"

#define MM_T f16
#define MM_W 16
#define MM_KEY key_f16
#define MM_SPECIAL 0
#include "kernel_template.h"

#define MM_T u32
#define MM_W 32
#define MM_KEY key_u32
#define MM_SPECIAL 0
#include "kernel_template.h"

#define MM_T i32
#define MM_W 32
#define MM_KEY key_i32
#define MM_SPECIAL 0
#include "kernel_template.h"

#define MM_T f32
#define MM_W 32
#define MM_KEY key_f32
#define MM_SPECIAL 0x7F80u
#include "kernel_template.h"

#define MM_T u64
#define MM_W 64
#define MM_KEY key_u64
#define MM_SPECIAL 0
#include "kernel_template.h"

#define MM_T i64
#define MM_W 64
#define MM_KEY key_i64
#define MM_SPECIAL 0
#include "kernel_template.h"

#define MM_T f64
#define MM_W 64
#define MM_KEY key_f64
#define MM_SPECIAL 0x7FF0u
#include "kernel_template.h"

/* The dtypes the engine handles (native byte order only). */
static const mm_type mm_types[] = {
    {.kind = 'b', .itemsize = 1, .key_bits = 8, .is_float = 0, .window_xor = -1,
     .hist0 = hist0_bool, .filter = filter_bool, .load = load_bool, .nans = nans_bool,
     .store = store_bool, .rawmap = rawmap_bool, .keytop = keytop_bool,
     .wcount = wcount_bool},
    {.kind = 'u', .itemsize = 1, .key_bits = 8, .is_float = 0, .window_xor = -1,
     .hist0 = hist0_u8, .filter = filter_u8, .load = load_u8, .nans = nans_u8,
     .store = store_u8, .rawmap = rawmap_u8, .keytop = keytop_u8,
     .wcount = wcount_u8},
    {.kind = 'i', .itemsize = 1, .key_bits = 8, .is_float = 0, .window_xor = -1,
     .hist0 = hist0_i8, .filter = filter_i8, .load = load_i8, .nans = nans_i8,
     .store = store_i8, .rawmap = rawmap_i8, .keytop = keytop_i8,
     .wcount = wcount_i8},
    {.kind = 'u', .itemsize = 2, .key_bits = 16, .is_float = 0, .window_xor = 0,
     .hist0 = hist0_u16, .filter = filter_u16, .load = load_u16, .nans = nans_u16,
     .store = store_u16, .rawmap = rawmap_u16, .keytop = keytop_u16,
     .wcount = wcount_u16},
    {.kind = 'i', .itemsize = 2, .key_bits = 16, .is_float = 0, .window_xor = 0x8000,
     .hist0 = hist0_i16, .filter = filter_i16, .load = load_i16, .nans = nans_i16,
     .store = store_i16, .rawmap = rawmap_i16, .keytop = keytop_i16,
     .wcount = wcount_i16},
    {.kind = 'f', .itemsize = 2, .key_bits = 16, .is_float = 1, .window_xor = -1,
     .hist0 = hist0_f16, .filter = filter_f16, .load = load_f16, .nans = nans_f16,
     .store = store_f16, .rawmap = rawmap_f16, .keytop = keytop_f16,
     .wcount = wcount_f16},
    {.kind = 'u', .itemsize = 4, .key_bits = 32, .is_float = 0, .window_xor = -1,
     .hist0 = hist0_u32, .filter = filter_u32, .load = load_u32, .nans = nans_u32,
     .store = store_u32, .rawmap = rawmap_u32, .keytop = keytop_u32,
     .wcount = wcount_u32},
    {.kind = 'i', .itemsize = 4, .key_bits = 32, .is_float = 0, .window_xor = -1,
     .hist0 = hist0_i32, .filter = filter_i32, .load = load_i32, .nans = nans_i32,
     .store = store_i32, .rawmap = rawmap_i32, .keytop = keytop_i32,
     .wcount = wcount_i32},
    {.kind = 'f', .itemsize = 4, .key_bits = 32, .is_float = 1, .window_xor = -1,
     .hist0 = hist0_f32, .filter = filter_f32, .load = load_f32, .nans = nans_f32,
     .store = store_f32, .rawmap = rawmap_f32, .keytop = keytop_f32,
     .wcount = wcount_f32},
    {.kind = 'u', .itemsize = 8, .key_bits = 64, .is_float = 0, .window_xor = -1,
     .hist0 = hist0_u64, .filter = filter_u64, .load = load_u64, .nans = nans_u64,
     .store = store_u64, .rawmap = rawmap_u64, .keytop = keytop_u64,
     .wcount = wcount_u64},
    {.kind = 'i', .itemsize = 8, .key_bits = 64, .is_float = 0, .window_xor = -1,
     .hist0 = hist0_i64, .filter = filter_i64, .load = load_i64, .nans = nans_i64,
     .store = store_i64, .rawmap = rawmap_i64, .keytop = keytop_i64,
     .wcount = wcount_i64},
    {.kind = 'f', .itemsize = 8, .key_bits = 64, .is_float = 1, .window_xor = -1,
     .hist0 = hist0_f64, .filter = filter_f64, .load = load_f64, .nans = nans_f64,
     .store = store_f64, .rawmap = rawmap_f64, .keytop = keytop_f64,
     .wcount = wcount_f64},
};

const mm_type *
mm_type_of(PyArray_Descr *descr)
{
    const mm_type *found = NULL;
    npy_intp size = PyDataType_ELSIZE(descr);
    for (size_t i = 0; i < sizeof(mm_types) / sizeof(mm_types[0]) && found == NULL; i++)
        if (PyArray_ISNBO(descr->byteorder) && mm_types[i].kind == descr->kind &&
            mm_types[i].itemsize == size)
            found = &mm_types[i];
    return found;
}

/* Here, beside the filter loops, so that flush_stage stays in their translation unit. */
void
mm_filter_flush(mm_filter *f, int tid)
{
    for (int g = 0; g < f->n_gathered; g++)
        if (f->staged[(size_t)tid * (size_t)f->thread_stride + (size_t)g] > 0)
            flush_stage(f, tid, g);
}
