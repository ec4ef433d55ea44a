build/src/core/lifecycle.o: src/core/lifecycle.c src/core/lifecycle.h
src/core/lifecycle.h:
