build/tests/test_placement: tests/unit/test_placement.c tests/unit/unit.h \
 src/core/util.h src/sched/placement.h src/core/spec.h
tests/unit/unit.h:
src/core/util.h:
src/sched/placement.h:
src/core/spec.h:
