build/src/berth.o: src/berth.c src/cmd/commands.h
src/cmd/commands.h:
