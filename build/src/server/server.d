build/src/server/server.o: src/server/server.c src/server/server.h \
 src/core/util.h src/server/cluster.h src/core/hmap.h \
 src/core/lifecycle.h src/core/spec.h src/store/store.h src/core/addr.h \
 src/core/log.h
src/server/server.h:
src/core/util.h:
src/server/cluster.h:
src/core/hmap.h:
src/core/lifecycle.h:
src/core/spec.h:
src/store/store.h:
src/core/addr.h:
src/core/log.h:
