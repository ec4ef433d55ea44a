build/src/core/addr.o: src/core/addr.c src/core/addr.h src/core/util.h
src/core/addr.h:
src/core/util.h:
