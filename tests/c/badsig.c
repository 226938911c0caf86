/* kill(2) with a signal number out of range must fail with EINVAL, and
 * rt_sigaction(2) on SIGKILL too; prints each result as "name=errno-name". */
#define _GNU_SOURCE	/* strerrorname_np */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void report(const char *what, int rc)
{
	printf("%s=%s\n", what, rc == 0 ? "ok" : strerrorname_np(errno));
}

int main(void)
{
	struct sigaction sa = { .sa_handler = SIG_IGN };

	report("kill99", kill(getpid(), 99));
	report("kill-1sig", kill(getpid(), -1));
	report("kill65", kill(getpid(), 65));
	report("kill0", kill(getpid(), 0));
	report("sigaction_kill", sigaction(SIGKILL, &sa, NULL));
	report("sigaction99", sigaction(99, &sa, NULL));
	return 0;
}
