/*
 * bigfork MB N [exec]: a process with MB MiB of touched heap forks N times;
 * each child exits (or, with a third argument, execs /bin/true) and the
 * parent waits, then writes one page of its heap. What copy-on-write fork
 * saves over copying the heap at every fork (pyvisor run --fork=eager|cow).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long mb, n;
	char *p;

	if (argc < 3)
		return 2;
	mb = atol(argv[1]);
	n = atol(argv[2]);
	p = malloc((mb << 20) + 4096);
	if (!p)
		return 1;
	memset(p, 1, (mb << 20) + 4096);
	for (long i = 0; i < n; i++) {
		int st;
		pid_t pid = fork();

		if (pid < 0)
			return 1;
		if (pid == 0) {
			if (argc > 3)
				execl("/bin/true", "true", (char *)0);
			_exit(p[0] == 1 ? 0 : 1);
		}
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			return 1;
		p[4096 + (i * 4096) % ((mb << 20) | 1)] = 2;
	}
	return 0;
}
