build/src/sched/ports.o: src/sched/ports.c src/sched/ports.h \
 src/core/util.h
src/sched/ports.h:
src/core/util.h:
