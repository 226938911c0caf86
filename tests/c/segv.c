/* Dies of SIGSEGV by writing through a null pointer: a sandbox run must
 * report it as a shell does, exit status 128 + SIGSEGV = 139. */
int main(void)
{
	*(volatile int *)0 = 1;
	return 0;
}
