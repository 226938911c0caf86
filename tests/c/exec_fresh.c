/*
 * execve(2) gives a fresh address space: nothing of the old image stays,
 * even after vfork(2), where the old image is the parent's. The parent maps
 * a marked page at a fixed address, vforks, and the child execs this program
 * again, which must fault on that address.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define ADDR ((char *)0x200000000UL)

static sigjmp_buf back;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(back, 1);
}

int main(int argc, char **argv)
{
	int st;
	pid_t pid;

	if (argc > 1) {		/* the exec'd image: the page must be gone */
		signal(SIGSEGV, on_segv);
		if (sigsetjmp(back, 1)) {
			printf("%s: old page gone\n", argv[1]);
			return 0;
		}
		volatile char first = ADDR[0];

		printf("%s: old page still mapped: %c\n", argv[1], first);
		return 1;
	}
	if (mmap(ADDR, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != ADDR)
		return 2;
	strcpy(ADDR, "SECRET");
	fflush(stdout);
	pid = vfork();
	if (pid == 0) {
		execl("/proc/self/exe", argv[0], "after vfork", (char *)NULL);
		_exit(127);
	}
	waitpid(pid, &st, 0);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		execl("/proc/self/exe", argv[0], "after fork", (char *)NULL);
		_exit(127);
	}
	waitpid(pid, &st, 0);
	return WEXITSTATUS(st);
}
