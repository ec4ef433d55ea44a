/* memhog - touch memory until killed: `memhog MIB` allocates MIB mebibytes
 * one at a time, writing every page, then sleeps. A test task that must hit
 * its memory limit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 1024;
	for (long i = 0; i < mib; i++) {
		char *p = malloc(1 << 20);
		if (!p)
			return 3;
		memset(p, (int)i, 1 << 20);
	}
	printf("allocated %ld MiB\n", mib);
	fflush(stdout);
	sleep(3600);
	return 0;
}
