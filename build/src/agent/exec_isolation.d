build/src/agent/exec_isolation.o: src/agent/exec_isolation.c \
 src/agent/exec_isolation.h src/core/util.h src/agent/cgroup.h
src/agent/exec_isolation.h:
src/core/util.h:
src/agent/cgroup.h:
