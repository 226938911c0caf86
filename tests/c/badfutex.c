/* futex(2) with an unaligned address must fail with EINVAL, and with an
 * unmapped one with EFAULT; FUTEX_WAIT on a word whose value differs fails with
 * EAGAIN and a wake with nobody waiting returns 0. Prints "name=result". */
#define _GNU_SOURCE	/* strerrorname_np */
#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long futex(void *addr, int op, int val, const struct timespec *ts)
{
	return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

static void report(const char *what, long rc)
{
	if (rc < 0)
		printf("%s=%s\n", what, strerrorname_np(errno));
	else
		printf("%s=%ld\n", what, rc);
}

int main(void)
{
	static _Alignas(8) int word[2];
	char *bytes = (char *)word;
	struct timespec short_wait = { 0, 1000000 };
	void *unmapped;

	/* A page we unmap again, so its address is certainly not mapped. */
	unmapped = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(unmapped, 4096);

	report("wait_unaligned", futex(bytes + 1, FUTEX_WAIT, 0, &short_wait));
	report("wake_unaligned", futex(bytes + 2, FUTEX_WAKE, 1, NULL));
	report("wait_unmapped", futex(unmapped, FUTEX_WAIT, 0, &short_wait));
	report("wait_null", futex(NULL, FUTEX_WAIT, 0, &short_wait));
	word[0] = 1;
	report("wait_mismatch", futex(word, FUTEX_WAIT, 0, NULL));
	report("wait_timeout", futex(word, FUTEX_WAIT, 1, &short_wait));
	report("wake_nobody", futex(word, FUTEX_WAKE, 1, NULL));
	report("bad_op", futex(word, 99, 0, NULL));
	return 0;
}
