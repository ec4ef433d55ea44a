/* intern.c - see intern.h. */
#include "core/intern.h"

#include <pthread.h>
#include <string.h>

#include "core/hmap.h"
#include "core/util.h"

static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hmap strings; /* borrowed keys: each key is its own value */
static int strings_ready;

const char *intern(const char *s)
{
	if (!s || strlen(s) > INTERN_LEN)
		return NULL;
	pthread_mutex_lock(&intern_lock);
	if (!strings_ready) {
		hmap_init_borrowed(&strings);
		strings_ready = 1;
	}
	const char *found = hmap_get(&strings, s);
	if (!found && strings.count < INTERN_MAX) {
		char *copy = xstrdup(s);
		hmap_put(&strings, copy, copy);
		found = copy;
	}
	pthread_mutex_unlock(&intern_lock);
	return found;
}
