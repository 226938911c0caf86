/*
 * compat32: switches to 32-bit compatibility mode (a far return to the user
 * code segment 0x23) and makes a system call there, with `syscall` (AMD) or
 * `int $0x80`, then comes back to 64-bit mode and prints the result.
 *
 * Linux serves both as i386 calls (eax=20: getpid). pyvisor serves no
 * 32-bit call (ENOSYS), and in no case may one run as a 64-bit call or
 * reach anything but the Sentry.
 *
 * Usage: compat32 syscall|int80; prints "result=N" then "done".
 */
#include <stdio.h>
#include <string.h>

static char low_stack[65536] __attribute__((aligned(16)));   /* below 4 GiB: non-PIE */
long compat_call(long nr, long use_int80, void *stack_top);

__asm__(
    "    .data\n"
    "saved_rsp: .quad 0\n"
    "    .text\n"
    "    .globl compat_call\n"
    "compat_call:\n"
    "    push %rbx; push %rbp; push %r12; push %r13; push %r14; push %r15\n"
    "    mov %rsp, saved_rsp(%rip)\n"
    "    mov %rdx, %rsp\n"
    "    mov %edi, %eax\n"
    "    mov %esi, %ebp\n"
    "    pushq $0x23\n"
    "    lea 1f(%rip), %r11\n"
    "    push %r11\n"
    "    lretq\n"
    "    .code32\n"
    "1:  cmp $0, %ebp\n"
    "    jne 2f\n"
    "    syscall\n"
    "    jmp 3f\n"
    "2:  int $0x80\n"
    "3:  ljmp $0x33, $4f\n"
    "    .code64\n"
    "4:  mov saved_rsp(%rip), %rsp\n"
    "    movslq %eax, %rax\n"
    "    pop %r15; pop %r14; pop %r13; pop %r12; pop %rbp; pop %rbx\n"
    "    ret\n");

int main(int argc, char **argv)
{
    long use_int80 = argc > 1 && strcmp(argv[1], "int80") == 0;
    long r = compat_call(20, use_int80, low_stack + sizeof(low_stack));
    printf("result=%ld\n", r);
    printf("done\n");
    return 0;
}
