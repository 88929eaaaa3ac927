/* CDSMLockState is a header: dsm_lock_state, shared by sync.c and DSMSync.
 * SwiftPM wants a source file in every C target. */
#include "CDSMLockState.h"
