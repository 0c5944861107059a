"""Face front end: detector adapter, tracker, alignment and the pipeline that chains them."""
