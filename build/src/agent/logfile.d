build/src/agent/logfile.o: src/agent/logfile.c src/agent/logfile.h \
 src/core/util.h
src/agent/logfile.h:
src/core/util.h:
