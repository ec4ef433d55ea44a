build/tests/test_ports: tests/unit/test_ports.c tests/unit/unit.h \
 src/core/util.h src/sched/ports.h
tests/unit/unit.h:
src/core/util.h:
src/sched/ports.h:
