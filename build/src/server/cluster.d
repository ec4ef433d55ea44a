build/src/server/cluster.o: src/server/cluster.c src/server/cluster.h \
 src/core/hmap.h src/core/lifecycle.h src/core/spec.h src/core/util.h \
 src/store/store.h src/core/log.h src/sched/placement.h src/sched/ports.h
src/server/cluster.h:
src/core/hmap.h:
src/core/lifecycle.h:
src/core/spec.h:
src/core/util.h:
src/store/store.h:
src/core/log.h:
src/sched/placement.h:
src/sched/ports.h:
