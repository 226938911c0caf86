/*
 * getpid_loop N: makes N getpid(2) calls through syscall(2), so that no libc
 * caching can hide them, then exits 0. The benchmark runs it at two N and
 * divides the time difference by the difference in N: start-up cancels out.
 */
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000;
	long i, sum = 0;

	for (i = 0; i < n; i++)
		sum += syscall(SYS_getpid);
	return sum == 0 ? 1 : 0;      /* use the result; getpid is never 0 */
}
