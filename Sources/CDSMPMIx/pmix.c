#define _GNU_SOURCE
#include "CDSMPMIx.h"
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if __has_include(<pmix.h>)
#include <pmix.h>

/* Every libpmix function used, also those the header's macros expand to,
 * goes through a pointer resolved with dlsym: the header gives the types. */
#define PMIX_FUNCTIONS(X) X(PMIx_Init) X(PMIx_Finalize) X(PMIx_Get) X(PMIx_Put) X(PMIx_Commit) \
                          X(PMIx_Fence) X(PMIx_Error_string) X(PMIx_Value_destruct)
#define DECLARE(f) static __typeof__(&f) p_##f;
PMIX_FUNCTIONS(DECLARE)
#define PMIx_Init (*p_PMIx_Init)
#define PMIx_Finalize (*p_PMIx_Finalize)
#define PMIx_Get (*p_PMIx_Get)
#define PMIx_Put (*p_PMIx_Put)
#define PMIx_Commit (*p_PMIx_Commit)
#define PMIx_Fence (*p_PMIx_Fence)
#define PMIx_Error_string (*p_PMIx_Error_string)
#define PMIx_Value_destruct (*p_PMIx_Value_destruct)

static pmix_proc_t me;
static bool joined;

static int load(char *error, size_t length) {
    /* RTLD_GLOBAL: libpmix loads plugins of its own that need its symbols. */
    void *library = dlopen("libpmix.so.2", RTLD_NOW | RTLD_GLOBAL);
    if (!library) {
        snprintf(error, length, "cannot load libpmix (%s): install libpmix2", dlerror());
        return -1;
    }
#define RESOLVE(f) if (!(p_##f = (__typeof__(p_##f))dlsym(library, #f))) { \
        snprintf(error, length, "libpmix has no %s", #f); return -1; }
    PMIX_FUNCTIONS(RESOLVE)
    return 0;
}

static int failed(pmix_status_t status, const char *what, char *error, size_t length) {
    snprintf(error, length, "%s: %s (%d)", what, PMIx_Error_string(status), status);
    return -1;
}

static int get_uint32(const pmix_proc_t *proc, const char *key, uint32_t *out) {
    pmix_value_t *value = NULL;
    if (PMIx_Get(proc, key, NULL, 0, &value) != PMIX_SUCCESS || !value) return -1;
    int r = -1;
    if (value->type == PMIX_UINT32) { *out = value->data.uint32; r = 0; }
    PMIX_VALUE_RELEASE(value);
    return r;
}

int cdsm_pmix_init(char *error, size_t length, uint32_t *rank, uint32_t *size, uint32_t *local_size) {
    if (load(error, length) != 0) return -1;
    pmix_status_t status = PMIx_Init(&me, NULL, 0);
    if (status != PMIX_SUCCESS) return failed(status, "PMIx_Init", error, length);
    joined = true;
    pmix_proc_t job;
    PMIX_LOAD_PROCID(&job, me.nspace, PMIX_RANK_WILDCARD);
    if (get_uint32(&job, PMIX_JOB_SIZE, size) != 0) {
        snprintf(error, length, "the PMIx server gives no job size (%s)", PMIX_JOB_SIZE);
        return -1;
    }
    if (get_uint32(&job, PMIX_LOCAL_SIZE, local_size) != 0) *local_size = 0;
    *rank = me.rank;
    return 0;
}

int cdsm_pmix_put(const char *key, const char *text, char *error, size_t length) {
    pmix_value_t value;
    memset(&value, 0, sizeof value);
    value.type = PMIX_STRING;
    value.data.string = (char *)text;
    pmix_status_t status = PMIx_Put(PMIX_GLOBAL, key, &value);
    if (status != PMIX_SUCCESS) return failed(status, "PMIx_Put", error, length);
    status = PMIx_Commit();
    if (status != PMIX_SUCCESS) return failed(status, "PMIx_Commit", error, length);
    return 0;
}

int cdsm_pmix_fence(char *error, size_t length) {
    pmix_info_t info[2];
    memset(info, 0, sizeof info);
    pmix_strncpy(info[0].key, PMIX_COLLECT_DATA, PMIX_MAX_KEYLEN);
    info[0].value.type = PMIX_BOOL;
    info[0].value.data.flag = true;
    /* A rank that never comes (it failed before the fence) must not keep
     * the others waiting for ever. */
    pmix_strncpy(info[1].key, PMIX_TIMEOUT, PMIX_MAX_KEYLEN);
    info[1].value.type = PMIX_INT;
    info[1].value.data.integer = 60;
    pmix_proc_t all;
    PMIX_LOAD_PROCID(&all, me.nspace, PMIX_RANK_WILDCARD);
    pmix_status_t status = PMIx_Fence(&all, 1, info, 2);
    if (status != PMIX_SUCCESS) return failed(status, "PMIx_Fence", error, length);
    return 0;
}

static int get_string(uint32_t rank, const char *key, char *out, size_t out_length, pmix_status_t *status) {
    pmix_proc_t proc;
    PMIX_LOAD_PROCID(&proc, me.nspace, rank);
    pmix_value_t *value = NULL;
    *status = PMIx_Get(&proc, key, NULL, 0, &value);
    if (*status != PMIX_SUCCESS || !value) return -1;
    int r = -1;
    if (value->type == PMIX_STRING && value->data.string) {
        snprintf(out, out_length, "%s", value->data.string);
        r = 0;
    }
    PMIX_VALUE_RELEASE(value);
    return r;
}

int cdsm_pmix_get(uint32_t rank, const char *key, char *out, size_t out_length, char *error, size_t length) {
    pmix_status_t status;
    if (get_string(rank, key, out, out_length, &status) == 0) return 0;
    if (status != PMIX_SUCCESS) return failed(status, "PMIx_Get", error, length);
    snprintf(error, length, "rank %u published %s as something else than a string", rank, key);
    return -1;
}

int cdsm_pmix_hostname(uint32_t rank, char *out, size_t out_length) {
    pmix_status_t status;
    return get_string(rank, PMIX_HOSTNAME, out, out_length, &status);
}

void cdsm_pmix_finalize(void) {
    if (joined) PMIx_Finalize(NULL, 0);
    joined = false;
}

#else

static int unavailable(char *error, size_t length) {
    snprintf(error, length, "this dsmrun was built without PMIx (install libpmix-dev and rebuild)");
    return -1;
}
int cdsm_pmix_init(char *error, size_t length, uint32_t *rank, uint32_t *size, uint32_t *local_size) {
    (void)rank; (void)size; (void)local_size;
    return unavailable(error, length);
}
int cdsm_pmix_put(const char *key, const char *text, char *error, size_t length) {
    (void)key; (void)text;
    return unavailable(error, length);
}
int cdsm_pmix_fence(char *error, size_t length) { return unavailable(error, length); }
int cdsm_pmix_get(uint32_t rank, const char *key, char *out, size_t out_length, char *error, size_t length) {
    (void)rank; (void)key; (void)out; (void)out_length;
    return unavailable(error, length);
}
int cdsm_pmix_hostname(uint32_t rank, char *out, size_t out_length) { (void)rank; (void)out; (void)out_length; return -1; }
void cdsm_pmix_finalize(void) {}
#endif

int cdsm_pmix_present(void) {
    if (!getenv("PMIX_RANK") || !getenv("PMIX_NAMESPACE")) return 0;
    extern char **environ;
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "PMIX_SERVER_URI", 15) == 0) return 1;
    }
    return 0;
}
