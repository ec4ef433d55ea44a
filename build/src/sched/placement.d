build/src/sched/placement.o: src/sched/placement.c src/sched/placement.h \
 src/core/spec.h src/core/util.h
src/sched/placement.h:
src/core/spec.h:
src/core/util.h:
