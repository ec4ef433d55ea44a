build/src/core/spec.o: src/core/spec.c src/core/spec.h src/core/util.h
src/core/spec.h:
src/core/util.h:
