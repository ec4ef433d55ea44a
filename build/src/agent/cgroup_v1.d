build/src/agent/cgroup_v1.o: src/agent/cgroup_v1.c \
 src/agent/cgroup-internal.h src/agent/cgroup.h src/core/util.h
src/agent/cgroup-internal.h:
src/agent/cgroup.h:
src/core/util.h:
