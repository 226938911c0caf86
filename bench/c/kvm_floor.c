/*
 * kvm_floor N: the least the KVM platform can pay per system call.
 *
 * A one-vCPU guest runs a user-mode (CPL3) loop of N getpid calls. Each
 * `syscall` goes where the KVM platform sends it: MSR_LSTAR points at a
 * user-readable trampoline page whose one instruction stores to a page with
 * no memory slot, so the vCPU exits with KVM_EXIT_MMIO. This VMM answers
 * through kvm_run's sync regs (no register ioctl per call): rax = the fake
 * pid, and back to the caller.
 *
 * Where SYSCALL stays at CPL3 (kvm_pvm) the VMM sets rip = rcx and
 * rflags = r11 itself; where it enters CPL0 (hardware VMX/SVM) the
 * trampoline's next instruction, sysretq, returns. KVM_GET_SREGS tells
 * which, once, at the first exit. The user loop checks every result and
 * ends with exit_group(0).
 *
 * Prints the nanoseconds per call over the N calls; exits 2 with a reason
 * when KVM cannot run this guest.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE	0x200000UL	/* guest RAM at GPA 0, identity-mapped */
#define MMIO		0x200000UL	/* the next 2 MiB: no memory slot */
#define PML4		0x1000
#define PDPT		0x2000
#define PD		0x3000
#define GDT		0x4000
#define TSS		0x5000
#define UCODE		0x6000		/* the user loop */
#define TRAMP		0x7000		/* LSTAR: store to MMIO; sysretq */
#define KCODE		0x8000		/* first entry: sysretq to the user loop */
#define USTACK		0xa000
#define FAKE_PID	4242
#define SYS_GETPID	39
#define SYS_EXIT_GROUP	231

#define PTE_P	1UL
#define PTE_W	2UL
#define PTE_U	4UL
#define PTE_PS	0x80UL

static const uint8_t user_loop[] = {
	0xb8, SYS_GETPID, 0, 0, 0,		/* 1: mov $39, %eax */
	0x0f, 0x05,				/*    syscall */
	0x3d, FAKE_PID & 0xff, FAKE_PID >> 8, 0, 0, /* cmp $FAKE_PID, %eax */
	0x75, 0x0e,				/*    jne 2f */
	0x48, 0xff, 0xcb,			/*    dec %rbx */
	0x75, 0xed,				/*    jnz 1b */
	0xb8, SYS_EXIT_GROUP, 0, 0, 0,		/*    mov $231, %eax */
	0x0f, 0x05,				/*    syscall */
	0xeb, 0xfe,				/*    jmp . */
	0x0f, 0x0b,				/* 2: ud2 (no IDT: shutdown) */
};
static const uint8_t tramp[] = {
	0xa3, 0, 0, MMIO >> 16 & 0xff, 0, 0, 0, 0, 0,	/* movabs %eax, MMIO */
	0x48, 0x0f, 0x07,			/* sysretq */
};

static int kvm, vm, vcpu;
static struct kvm_run *run;
static uint8_t *mem;

static void fail(const char *what)
{
	perror(what);
	exit(2);
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int dpl, int code)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->dpl = dpl;
	s->s = 1;
	s->l = code;
	s->db = !code;
	s->g = 1;
}

static void set_msrs(void)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[3];
	} m = { .h = { .nmsrs = 3 } };

	m.e[0].index = 0xc0000081;		/* STAR: user base 0x23, kernel CS 0x10 */
	m.e[0].data = 0x23UL << 48 | 0x10UL << 32;
	m.e[1].index = 0xc0000082;		/* LSTAR */
	m.e[1].data = TRAMP;
	m.e[2].index = 0xc0000084;		/* SFMASK: keep rflags */
	m.e[2].data = 0;
	if (ioctl(vcpu, KVM_SET_MSRS, &m) != 3)
		fail("KVM_SET_MSRS");
}

/* Page tables (2 MiB pages, all user-accessible), GDT in the host Linux layout, TSS. */
static void build_memory(void)
{
	uint64_t *gdt = (uint64_t *)(mem + GDT);

	((uint64_t *)(mem + PML4))[0] = PDPT | PTE_P | PTE_W | PTE_U;
	((uint64_t *)(mem + PDPT))[0] = PD | PTE_P | PTE_W | PTE_U;
	((uint64_t *)(mem + PD))[0] = 0 | PTE_P | PTE_W | PTE_U | PTE_PS;
	((uint64_t *)(mem + PD))[1] = MMIO | PTE_P | PTE_W | PTE_U | PTE_PS;
	gdt[2] = 0x00af9b000000ffffUL;		/* 0x10 kernel code, 64-bit */
	gdt[3] = 0x00cf93000000ffffUL;		/* 0x18 kernel data */
	gdt[4] = 0x00cffb000000ffffUL;		/* 0x20 user code, 32-bit */
	gdt[5] = 0x00cff3000000ffffUL;		/* 0x28 user data */
	gdt[6] = 0x00affb000000ffffUL;		/* 0x30 user code, 64-bit */
	gdt[8] = 0x0000890000000067UL | (uint64_t)TSS << 16;	/* 0x40 TSS */
	memcpy(mem + UCODE, user_loop, sizeof(user_loop));
	memcpy(mem + TRAMP, tramp, sizeof(tramp));
	memcpy(mem + KCODE, tramp + 9, 3);	/* sysretq */
}

static void setup(long n)
{
	struct kvm_userspace_memory_region region = { .slot = 0, .guest_phys_addr = 0,
						      .memory_size = MEM_SIZE };
	struct {
		struct kvm_cpuid2 h;
		struct kvm_cpuid_entry2 e[256];
	} cpuid = { .h = { .nent = 256 } };
	struct kvm_sregs sr;
	struct kvm_regs regs = { .rip = KCODE, .rcx = UCODE, .r11 = 0x2, .rflags = 0x2,
				 .rbx = n, .rsp = USTACK };

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		fail("/dev/kvm");
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		fail("KVM_CREATE_VM");
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		fail("mmap");
	region.userspace_addr = (uintptr_t)mem;
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) != 0)
		fail("KVM_SET_USER_MEMORY_REGION");
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		fail("KVM_CREATE_VCPU");
	run = mmap(NULL, ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE,
		   MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		fail("mmap kvm_run");
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) != 0 ||
	    ioctl(vcpu, KVM_SET_CPUID2, &cpuid) != 0)
		fail("CPUID");
	build_memory();
	if (ioctl(vcpu, KVM_GET_SREGS, &sr) != 0)
		fail("KVM_GET_SREGS");
	seg(&sr.cs, 0x10, 11, 0, 1);
	seg(&sr.ss, 0x18, 3, 0, 0);
	seg(&sr.ds, 0, 3, 0, 0);
	sr.es = sr.fs = sr.gs = sr.ds;
	sr.ds.unusable = sr.es.unusable = sr.fs.unusable = sr.gs.unusable = 1;
	memset(&sr.tr, 0, sizeof(sr.tr));
	sr.tr.selector = 0x40;
	sr.tr.base = TSS;
	sr.tr.limit = 0x67;
	sr.tr.type = 11;
	sr.tr.present = 1;
	sr.gdt.base = GDT;
	sr.gdt.limit = 16 * 8 - 1;
	sr.cr0 = 0x80050033;			/* PG WP NE ET MP PE */
	sr.cr3 = PML4;
	sr.cr4 = 0x20;				/* PAE */
	sr.efer = 0x501;			/* LMA LME SCE */
	if (ioctl(vcpu, KVM_SET_SREGS, &sr) != 0)
		fail("KVM_SET_SREGS");
	set_msrs();
	if (ioctl(vcpu, KVM_SET_REGS, &regs) != 0)
		fail("KVM_SET_REGS");
	run->kvm_valid_regs = KVM_SYNC_X86_REGS;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Serves syscalls until exit_group; returns how many getpids it answered. */
static long serve(void)
{
	int user_mode = -1;		/* does SYSCALL stay at CPL3? known at the first exit */
	long served = 0;

	for (;;) {
		struct kvm_regs *r = &run->s.regs.regs;

		if (ioctl(vcpu, KVM_RUN, 0) != 0)
			fail("KVM_RUN");
		if (run->exit_reason != KVM_EXIT_MMIO || run->mmio.phys_addr != MMIO) {
			fprintf(stderr, "unexpected exit %u at rip %llx\n", run->exit_reason,
				(unsigned long long)r->rip);
			exit(2);
		}
		if (user_mode < 0) {
			struct kvm_sregs sr;

			if (ioctl(vcpu, KVM_GET_SREGS, &sr) != 0)
				fail("KVM_GET_SREGS");
			user_mode = sr.cs.dpl == 3;
		}
		if (r->rax == SYS_EXIT_GROUP)
			return served;
		served += r->rax == SYS_GETPID;
		r->rax = r->rax == SYS_GETPID ? FAKE_PID : -38;
		if (user_mode) {
			r->rip = r->rcx;
			r->rflags = r->r11;
		}
		run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
	}
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 20000, served;
	double t0;

	if (n < 1)
		n = 1;
	setup(n);
	t0 = now();
	served = serve();
	if (served != n) {
		fprintf(stderr, "served %ld getpid calls, expected %ld\n", served, n);
		return 1;
	}
	printf("%.1f\n", (now() - t0) * 1e9 / n);
	return 0;
}
