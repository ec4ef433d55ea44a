/* exec_guard.c - kill what a runtime's exec left behind (exec_guard.h). */
#include "agent/driver/exec_guard.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int exec_guard_start(void (*orphaned)(void *ud, const char *note), void *ud, int *keep_fd)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0) {
		int e = -errno;
		close(p[0]);
		close(p[1]);
		return e;
	}
	if (pid == 0) {
		/* Out of task-exec's process group and session: the agent's
		 * kill of the group must not reach the guard. Its stdio goes:
		 * the agent waits for EOF on task-exec's output. */
		setsid();
		close(p[1]);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		for (int fd = 0; fd < 3 && null >= 0; fd++)
			dup2(null, fd);
		/* Notes until EOF: task-exec is gone. */
		char note[EXEC_GUARD_NOTE_MAX];
		size_t len = 0;
		for (;;) {
			char buf[EXEC_GUARD_NOTE_MAX];
			ssize_t r = read(p[0], buf, sizeof buf);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			for (ssize_t i = 0; i < r && len + 1 < sizeof note; i++)
				note[len++] = buf[i];
		}
		note[len] = 0;
		orphaned(ud, note);
		_exit(0);
	}
	close(p[0]);
	*keep_fd = p[1];
	return 0;
}

void exec_guard_note(int keep_fd, const char *note)
{
	size_t len = strlen(note);
	while (len) {
		ssize_t w = write(keep_fd, note, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		note += w;
		len -= (size_t)w;
	}
}

void exec_guard_kill(pid_t pid)
{
	if (pid <= 1)
		return;
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_send_signal)
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return; /* gone */
	/* The group first, while its leader (alive: checked by the pidfd)
	 * keeps the id from being reused. */
	if (syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0) == 0)
		kill(-pid, SIGKILL);
	syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
	close(fd);
#else
	kill(pid, SIGKILL);
#endif
}
