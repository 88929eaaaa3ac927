/*
 * mgs.c n - Modified Gram-Schmidt QR (the Q factor) of an n x n matrix in a
 * System V segment, columns cyclic over the nodes, one barrier per step
 * (common.h's, built from System V semaphores). The program is in
 * mgs_kernel.h, shared with mgs_spin.c and mgs_semcount.c.
 *
 * Node 0 prints
 *   mgs n=<n> nodes=<N> hash=<FNV-1a 64 of Q's bytes, 16 hex>
 *   time=<seconds>
 */
#include "mgs_kernel.h"

int main(int argc, char **argv) { return mgs_main("mgs", argc, argv, NULL, t_barrier); }
