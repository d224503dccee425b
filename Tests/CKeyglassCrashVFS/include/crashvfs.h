#ifndef KEYGLASS_CRASHVFS_H
#define KEYGLASS_CRASHVFS_H

/*
 * A SQLite VFS for tests that simulates power loss, as SQLite's own test suite does with its
 * crash VFS. Every file opened through it keeps two images: what the running program sees (the
 * OS page cache: every write, at once) and what is on the platter (only what an xSync covered).
 * Writes between two syncs wait in memory; xSync applies them to the real file. At a simulated
 * power cut the waiting writes are dropped — or, in "torn" mode, a random subset of them is
 * applied, some only in part (sector by sector), as a disk that reorders writes between barriers
 * would — and from then on every file operation fails, as if the machine were off. The real
 * files on disk are then exactly what survived the cut: copy them (without the -shm file, which
 * is shared memory, not data) and open the copy to see what a rebooted machine would find.
 *
 * Limits of the model: creating and deleting files take effect at once (directory entries are not
 * simulated; SQLite syncs directories itself), and a torn write keeps a prefix of the write in
 * 512-byte steps from its own offset. For tests only: one global lock serialises every operation.
 */

/* Registers the VFS under the name "keyglass-crash" (not as the default). Idempotent. */
int keyglass_crashvfs_register(void);

/* Cuts the power. torn = 0: every write not covered by a sync is lost. torn = 1: a random subset
 * (by seed) of them survives, some partly. Returns the number of unsynced writes that existed. */
int keyglass_crashvfs_power_cut(int torn, unsigned long long seed);

/* Forgets every file and turns the power back on (for the next round; open no file of the cut
 * round through the VFS again). */
void keyglass_crashvfs_reset(void);

/* Syncs seen so far (for tests to wait until the log has made durable progress). */
unsigned long long keyglass_crashvfs_syncs(void);

#endif
