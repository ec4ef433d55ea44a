/* mem_trim.h - give back what a long-lived, mostly idle process (the agent)
 * no longer uses: the allocator's free pages, and the pages of its binary
 * and libraries that only start-up touched (docs/decisions.md "Idle agent
 * memory").
 *
 * The file-backed pages dropped are clean copies of the page cache: nothing
 * is lost, the kernel keeps them cached (shared with every other process
 * mapping the same files), and a page needed again costs one minor fault.
 * Pages the process wrote (relocations, .data, its heap) are never dropped
 * this way.
 */
#ifndef BERTH_MEM_TRIM_H
#define BERTH_MEM_TRIM_H

#include <stddef.h>

/* What one mem_trim() did, in KiB. */
struct mem_trim_result {
	long rss_before_kib, rss_after_kib;
	int mappings_dropped; /* file mappings whose clean pages were dropped */
};

/* Return the allocator's free memory and drop the clean file-backed pages
 * from this process's page tables (read-only, never written mappings of
 * files only). Safe at any time from any thread; costs about a millisecond
 * plus the minor faults of the pages used again. result may be NULL.
 * 0, or -1 when /proc/self/smaps cannot be read (the allocator part is
 * done anyway). */
int mem_trim(struct mem_trim_result *result);

/* The smaps parser, exposed for the tests: calls drop(start, len, arg) for
 * each mapping of text that mem_trim would drop (a path, no 'w' permission,
 * not shared-writable, no anonymous (copied-on-write) page). */
void mem_trim_scan(const char *smaps_text,
		   void (*drop)(unsigned long start, unsigned long len, void *arg), void *arg);

#endif
