#ifndef CDSMPMIX_H
#define CDSMPMIX_H
#include <stddef.h>
#include <stdint.h>

/// PMIx, the wire-up both Slurm (srun --mpi=pmix) and Open MPI (mpirun)
/// serve to the processes they start: rank, job size, and a key-value
/// exchange with a fence. libpmix is loaded with dlopen when first needed,
/// so dsmrun runs (without this mode) where it is not installed.

/// Whether this process was started by a PMIx server (PMIX_RANK and a
/// server URI in the environment).
int cdsm_pmix_present(void);
/// Loads libpmix and joins the job. 0, or -1 with a message in `error`.
int cdsm_pmix_init(char *error, size_t error_length, uint32_t *rank, uint32_t *size, uint32_t *local_size);
/// Publishes `value` under `key` for every rank (PMIX_GLOBAL) and commits.
int cdsm_pmix_put(const char *key, const char *value, char *error, size_t error_length);
/// Waits for every rank, exchanging what they committed.
int cdsm_pmix_fence(char *error, size_t error_length);
/// The string `key` that `rank` published. 0, or -1 with a message.
int cdsm_pmix_get(uint32_t rank, const char *key, char *out, size_t out_length, char *error, size_t error_length);
/// The host name the engine gives for `rank` (PMIX_HOSTNAME); 0 or -1.
int cdsm_pmix_hostname(uint32_t rank, char *out, size_t out_length);
void cdsm_pmix_finalize(void);
#endif
