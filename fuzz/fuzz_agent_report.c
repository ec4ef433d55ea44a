/* clang-format off */
/* fuzz_agent_report.c - libFuzzer target for the agents' watch and status
 * bodies read without a tree (core/agent_report.h, core/json_scan.h).
 *
 * fuzz-sources: src/core/util.c src/core/json_scan.c src/core/agent_report.c src/core/lifecycle.c src/core/cidr.c
 * fuzz-libs: -ljansson -lm
 *
 * Checks: no crash, leak or UB on any bytes; the reader accepts exactly
 * what jansson (json_loadb, JSON_REJECT_DUPLICATES) accepts as an object,
 * refuses with the message the server built from jansson's error, and reads
 * every member the server uses as jansson's tree has it
 * (tests/unit/agent_report_same.h), for a watch and for a status.
 */
/* clang-format on */
#include <stdint.h>
#include <stdlib.h>

#include "../tests/unit/agent_report_same.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	if (agent_report_differs(s, size, AGENT_CALL_WATCH) ||
	    agent_report_differs(s, size, AGENT_CALL_STATUS))
		abort();
	return 0;
}
