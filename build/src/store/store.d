build/src/store/store.o: src/store/store.c src/store/store-internal.h \
 src/store/store.h src/core/util.h
src/store/store-internal.h:
src/store/store.h:
src/core/util.h:
