build/tests/test_cgroup: tests/unit/test_cgroup.c src/agent/cgroup.h \
 src/core/util.h tests/unit/unit.h
src/agent/cgroup.h:
src/core/util.h:
tests/unit/unit.h:
