/*
 * stubpages: touches the two pages the ptrace platform keeps in every
 * address space above the application's range: the stub's code at
 * 0x7fffffe01000 and its control page (batches of address-space edits) at
 * 0x7fffffe02000. Natively nothing is mapped there: SIGSEGV.
 *
 * Usage: stubpages ctrl|code|write
 *   ctrl   makes address-space edits (mmap, mprotect, munmap), then prints
 *          "ctrl nonzero=N": the bytes of the control page that are not zero
 *   code   prints "code nonzero=N" for the code page
 *   write  writes to the control page
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define CODE_PAGE ((volatile unsigned char *)0x7fffffe01000UL)
#define CTRL_PAGE ((volatile unsigned char *)0x7fffffe02000UL)

static int nonzero(volatile unsigned char *p)
{
    int n = 0;
    for (int i = 0; i < 4096; i++)
        n += p[i] != 0;
    return n;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "ctrl";
    setvbuf(stdout, NULL, _IONBF, 0);
    if (strcmp(mode, "ctrl") == 0) {
        for (int i = 0; i < 8; i++) {
            char *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            p[0] = 1;
            mprotect(p + 4096, 4096, PROT_READ);
            munmap(p, 4096);
        }
        printf("ctrl nonzero=%d\n", nonzero(CTRL_PAGE));
    } else if (strcmp(mode, "code") == 0) {
        printf("code nonzero=%d\n", nonzero(CODE_PAGE));
    } else {
        CTRL_PAGE[8] = 0x42;
        printf("written\n");
    }
    return 0;
}
