build/src/agent/cgroup.o: src/agent/cgroup.c src/agent/cgroup-internal.h \
 src/agent/cgroup.h src/core/util.h
src/agent/cgroup-internal.h:
src/agent/cgroup.h:
src/core/util.h:
