build/src/store/store_sqlite.o: src/store/store_sqlite.c \
 src/store/store-internal.h src/store/store.h src/core/util.h
src/store/store-internal.h:
src/store/store.h:
src/core/util.h:
