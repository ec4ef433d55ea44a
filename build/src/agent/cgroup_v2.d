build/src/agent/cgroup_v2.o: src/agent/cgroup_v2.c \
 src/agent/cgroup-internal.h src/agent/cgroup.h src/core/util.h
src/agent/cgroup-internal.h:
src/agent/cgroup.h:
src/core/util.h:
