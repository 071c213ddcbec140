/*
 * Counts CPython's memory allocations, for the accept-path profile.
 *
 * Loaded with ctypes into the interpreter being profiled: tlc_install() wraps
 * the allocators of the OBJ domain (PyObject_Malloc: objects) and the MEM
 * domain (PyMem_Malloc: buffers) with functions that count malloc, calloc and
 * realloc calls and then call the original allocator.  tlc_count() returns
 * the total so far.  Frees are not counted: "allocations per connection" is
 * the number of allocator calls, which is what costs time.
 *
 * Both domains are only ever called with the GIL held, so plain counters are
 * exact.  Installing a wrapper at any time is safe: blocks allocated before
 * are freed through the wrapper, which hands them to the same original.
 */
#include <Python.h>

static PyMemAllocatorEx orig_obj, orig_mem;
static unsigned long long allocs;
static int installed;

static void *obj_malloc(void *ctx, size_t n) { (void)ctx; allocs++; return orig_obj.malloc(orig_obj.ctx, n); }
static void *obj_calloc(void *ctx, size_t m, size_t n) { (void)ctx; allocs++; return orig_obj.calloc(orig_obj.ctx, m, n); }
static void *obj_realloc(void *ctx, void *p, size_t n) { (void)ctx; allocs++; return orig_obj.realloc(orig_obj.ctx, p, n); }
static void obj_free(void *ctx, void *p) { (void)ctx; orig_obj.free(orig_obj.ctx, p); }

static void *mem_malloc(void *ctx, size_t n) { (void)ctx; allocs++; return orig_mem.malloc(orig_mem.ctx, n); }
static void *mem_calloc(void *ctx, size_t m, size_t n) { (void)ctx; allocs++; return orig_mem.calloc(orig_mem.ctx, m, n); }
static void *mem_realloc(void *ctx, void *p, size_t n) { (void)ctx; allocs++; return orig_mem.realloc(orig_mem.ctx, p, n); }
static void mem_free(void *ctx, void *p) { (void)ctx; orig_mem.free(orig_mem.ctx, p); }

void tlc_install(void) {
    PyMemAllocatorEx obj = {NULL, obj_malloc, obj_calloc, obj_realloc, obj_free};
    PyMemAllocatorEx mem = {NULL, mem_malloc, mem_calloc, mem_realloc, mem_free};
    if (installed) return;
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &orig_obj);
    PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &orig_mem);
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &obj);
    PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &mem);
    installed = 1;
}

unsigned long long tlc_count(void) { return allocs; }
