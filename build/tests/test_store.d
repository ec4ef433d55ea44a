build/tests/test_store: tests/unit/test_store.c src/store/store.h \
 src/core/util.h src/store/store-internal.h tests/unit/unit.h
src/store/store.h:
src/core/util.h:
src/store/store-internal.h:
tests/unit/unit.h:
