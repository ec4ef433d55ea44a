/* intern.h - one shared copy of short strings that recur: task event
 * messages ("waiting for a node", "assigned to node sim-00042", ...) are
 * the same for many of a million tasks, and a copy per task is a quarter
 * of a task's memory.
 *
 * Bounded: at most INTERN_MAX strings of at most INTERN_LEN bytes are kept
 * (never freed, for the process's life); anything else gets NULL and the
 * caller keeps its own copy. Thread-safe. */
#ifndef BERTH_INTERN_H
#define BERTH_INTERN_H

#define INTERN_MAX 65536
#define INTERN_LEN 80

/* The shared copy of s, or NULL (too long, or the set is full). */
const char *intern(const char *s);

#endif
