build/src/core/hmap.o: src/core/hmap.c src/core/hmap.h src/core/util.h
src/core/hmap.h:
src/core/util.h:
