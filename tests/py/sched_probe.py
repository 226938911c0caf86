import os
print(os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
print(os.sched_get_priority_max(os.SCHED_FIFO), os.sched_get_priority_min(os.SCHED_RR), os.sched_get_priority_max(os.SCHED_OTHER))
print(os.getpriority(os.PRIO_PROCESS, 0)); os.setpriority(os.PRIO_PROCESS, 0, 5); print(os.getpriority(os.PRIO_PROCESS, 0))
try:
    os.sched_setscheduler(0, 99, os.sched_param(0))
except OSError as e: print("EINVAL" if e.errno == 22 else e)
print(os.sched_rr_get_interval(0) > 0)
