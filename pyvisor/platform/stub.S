/*
 * The ptrace platform's stub: the host process that holds one address space.
 *
 * It is exec'd already traced (PTRACE_TRACEME), so it stops at its entry
 * point before running anything. The Sentry then unmaps everything but this
 * page and never lets the application run code here: the page exists only as
 * the place where the Sentry injects address-space edits. To inject, the
 * Sentry sets rax and the arguments, points rip at _start and continues: the
 * host runs exactly that one call and the int3 after it stops the stub again.
 */
	.text
	.globl _start
_start:
	syscall
	int3
	ud2
