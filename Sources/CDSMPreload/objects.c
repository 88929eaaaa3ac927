// Which loaded objects are the program's and which are the runtime's.
//
// In image mode the program's writable data must be one copy, as in one
// process: the executable's data and bss, and those of the libraries it
// loads (libgomp keeps the lock of an unnamed `omp critical` and of its
// atomics in its bss). The runtime's own objects stay per node: libc and
// the dynamic linker (each node's malloc arenas, stdio, thread list), this
// library, and what it needs (the C++ and unwinder libraries the Swift
// runtime uses). The runtime thread touches their data at any time, and a
// page of it that another node owned would fault on the thread that serves
// faults. So the rule is: an object this library needs, directly or
// through another, is the runtime's; every other object loaded at start-up
// is the program's. (A library both use, libstdc++ for a C++ program, is
// the runtime's: its statics, such as std::cout's formatting flags, are
// per node.)
#define _GNU_SOURCE
#include "internal.h"
#include <elf.h>
#include <link.h>
#include <string.h>

#define MAX_OBJECTS 128

typedef struct {
    const char *name; /* as the dynamic linker has it; "" for the executable */
    uintptr_t base;
    const ElfW(Phdr) *phdr;
    int phnum;
    int runtime;
} loaded_object;

typedef struct {
    loaded_object objects[MAX_OBJECTS];
    int count;
} object_list;

static int collect(struct dl_phdr_info *info, size_t size, void *out) {
    (void)size;
    object_list *list = out;
    if (list->count == MAX_OBJECTS) return 1;
    list->objects[list->count++] = (loaded_object){
        info->dlpi_name ? info->dlpi_name : "", info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum, 0};
    return 0;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The object whose file name (or soname) is `needed`. */
static loaded_object *find_needed(object_list *list, const char *needed) {
    for (int i = 1; i < list->count; i++)
        if (strcmp(base_name(list->objects[i].name), needed) == 0) return &list->objects[i];
    return NULL;
}

/* Marks `object` and everything it needs as the runtime's. */
static void mark_runtime(object_list *list, loaded_object *object) {
    if (object->runtime) return;
    object->runtime = 1;
    const ElfW(Dyn) *dynamic = NULL;
    for (int i = 0; i < object->phnum; i++)
        if (object->phdr[i].p_type == PT_DYNAMIC) dynamic = (const ElfW(Dyn) *)(object->base + object->phdr[i].p_vaddr);
    if (!dynamic) return;
    uintptr_t strings = 0;
    for (const ElfW(Dyn) *d = dynamic; d->d_tag != DT_NULL; d++)
        if (d->d_tag == DT_STRTAB) strings = d->d_un.d_ptr;
    if (!strings) return;
    /* The dynamic linker relocates DT_STRTAB in place on x86-64; an
     * unrelocated one is an offset from the load address. */
    if (strings < object->base) strings += object->base;
    for (const ElfW(Dyn) *d = dynamic; d->d_tag != DT_NULL; d++) {
        if (d->d_tag != DT_NEEDED) continue;
        loaded_object *needed = find_needed(list, (const char *)strings + d->d_un.d_val);
        if (needed) mark_runtime(list, needed);
    }
}

/* The objects loaded at start-up, classified once (image set-up asks for
 * the program's data, then for the runtime's code). */
static object_list loaded;

static object_list *classified(void) {
    object_list *list = &loaded;
    if (list->count > 0) return list;
    dl_iterate_phdr(collect, list);
    Dl_info self;
    if (!dladdr((void *)&classified, &self)) return list;
    for (int i = 1; i < list->count; i++) {
        loaded_object *o = &list->objects[i];
        if (o->base == (uintptr_t)self.dli_fbase) mark_runtime(list, o);
        /* The vDSO has no file and no data. */
        if (o->name[0] == 0 || strncmp(base_name(o->name), "linux-vdso", 10) == 0) o->runtime = 1;
    }
    return list;
}

/* An object's writable data and bss, minus what RELRO makes read-only
 * after relocation. */
static int writable_range(const loaded_object *o, dsm_range *out) {
    uintptr_t relro_end = 0;
    for (int i = 0; i < o->phnum; i++) {
        const ElfW(Phdr) *ph = &o->phdr[i];
        if (ph->p_type == PT_GNU_RELRO) relro_end = (o->base + ph->p_vaddr + ph->p_memsz + 4095) & ~4095UL;
    }
    int found = 0;
    for (int i = 0; i < o->phnum; i++) {
        const ElfW(Phdr) *ph = &o->phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W)) continue;
        uintptr_t start = (o->base + ph->p_vaddr) & ~4095UL;
        uintptr_t end = (o->base + ph->p_vaddr + ph->p_memsz + 4095) & ~4095UL;
        if (start < relro_end) start = relro_end;
        if (start < end) {
            *out = (dsm_range){start, end};
            found = 1;
        }
    }
    return found;
}

int dsm_program_data(dsm_range *out, int max) {
    const object_list *list = classified();
    int n = 0;
    /* The executable first (it may have no writable data), then the
     * program's libraries in load order. */
    if (max > 0 && list->count > 0) {
        if (!writable_range(&list->objects[0], &out[0])) out[0] = (dsm_range){0, 0};
        n = 1;
    }
    for (int i = 1; i < list->count && n < max; i++)
        if (!list->objects[i].runtime && writable_range(&list->objects[i], &out[n])) n++;
    return n;
}

int dsm_runtime_text(dsm_range *out, int max) {
    const object_list *list = classified();
    int n = 0;
    for (int i = 1; i < list->count; i++) {
        const loaded_object *o = &list->objects[i];
        if (!o->runtime) continue;
        for (int k = 0; k < o->phnum && n < max; k++) {
            const ElfW(Phdr) *ph = &o->phdr[k];
            if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
            out[n++] = (dsm_range){(o->base + ph->p_vaddr) & ~4095UL, (o->base + ph->p_vaddr + ph->p_memsz + 4095) & ~4095UL};
        }
    }
    return n;
}
