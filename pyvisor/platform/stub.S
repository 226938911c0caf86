/*
 * The ptrace platform's stub: the host process that holds one address space.
 *
 * It is exec'd already traced (PTRACE_TRACEME), so it stops at its entry
 * point before running anything. The Sentry then unmaps everything but this
 * page and never lets the application run code here: the page exists only as
 * the place where the Sentry injects host calls. To inject, the Sentry sets
 * rax and the arguments, points rip at an entry and continues; the host runs
 * exactly that one call and the int3 after it stops the stub again.
 *
 *   _start       any address-space edit (mmap, munmap, mprotect) or exit.
 *   _start+16    clone: the caller traps as above; the new stub process or
 *                thread asks to die with its parent and waits in pause()
 *                for the Sentry thread that will trace it to seize it.
 *   _start+64    a batch of edits: rdi entries of 8 words (nr, six
 *                arguments, unused) at rsi, the process's control page,
 *                which the stub maps read-only: the application's other
 *                threads run meanwhile and must not be able to change a
 *                queued call. The first failure ends the batch, its result
 *                in rax. One stop for many edits: a stop costs more than
 *                an edit.
 *
 * Before the application runs, the Sentry installs the stub's seccomp filter
 * (seccomp.stub_rules): each call above is allowed only at its own syscall
 * instruction (ptrace.STUB_SITES, checked against this binary at start-up),
 * with its fd and flag arguments; anything else kills the stub.
 */
	.text
	.globl _start
_start:
	syscall
	int3
	ud2

	.balign 16
clone_entry:
	syscall
	test	%rax, %rax
	jnz	2f
	mov	$157, %eax		/* prctl(PR_SET_PDEATHSIG, SIGKILL) */
	mov	$1, %edi
	mov	$9, %esi
	syscall
1:	mov	$34, %eax		/* pause(), until seized */
	syscall
	jmp	1b
2:	int3
	ud2

	.balign 64
batch_entry:
	mov	%rdi, %r12
	mov	%rsi, %r13
1:	test	%r12, %r12
	jz	2f
	mov	0(%r13), %rax
	mov	8(%r13), %rdi
	mov	16(%r13), %rsi
	mov	24(%r13), %rdx
	mov	32(%r13), %r10
	mov	40(%r13), %r8
	mov	48(%r13), %r9
	syscall
	cmp	$-4095, %rax
	jae	2f
	add	$64, %r13
	dec	%r12
	jmp	1b
2:	int3
	ud2
